"""Token-id batches: padding id lists, validating padded tensors, stripping special tokens.

Every reward function here takes token ids either as a right-padded ``[B, L]`` LongTensor with ``[B]``
lengths (what the trainer and the batched environment hold) or as ``B`` Python lists of ids.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch


def pad_id_lists(
    sequences: Sequence[Sequence[int]], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack lists of token ids into a right-padded ``[B, L]`` LongTensor (pad 0) and ``[B]`` lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    width = int(lengths.max()) if len(sequences) and int(lengths.max()) > 0 else 1
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return ids.to(device), lengths.to(device)


def as_padded(
    ids: torch.Tensor | Sequence[Sequence[int]],
    lengths: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept a padded ``[B, L]`` tensor (+ optional ``[B]`` lengths; default: full rows) or id lists."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 2:
            raise ValueError(f"token ids must be a [B, L] tensor, got shape {tuple(ids.shape)}")
        ids = ids.long()
        if lengths is None:
            lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long, device=ids.device)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=ids.device)
        if lengths.shape != (ids.shape[0],):
            raise ValueError(f"lengths must have shape ({ids.shape[0]},), got {tuple(lengths.shape)}")
        if bool((lengths < 0).any()) or bool((lengths > ids.shape[1]).any()):
            raise ValueError(f"lengths must lie in [0, {ids.shape[1]}], got {lengths.tolist()}")
        return (ids, lengths) if device is None else (ids.to(device), lengths.to(device))
    return pad_id_lists(ids, device=device)


def strip_ids(
    ids: torch.Tensor, lengths: torch.Tensor, drop: Collection[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove every id in ``drop`` (and the padding past ``lengths``) and left-align what remains.

    Returns new ``[B, L']`` ids (padded with 0) and ``[B]`` lengths. N-grams then join across a removed
    token, exactly as if it had never been generated.
    """
    if not drop:
        return ids, lengths
    width = ids.shape[1]
    in_length = torch.arange(width, device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, L]
    # a lookup table over 0..max(drop) is several times faster than torch.isin on CPU
    top = max(drop)
    table = torch.zeros(top + 1, dtype=torch.bool, device=ids.device)
    table[torch.tensor(sorted(drop), dtype=torch.long, device=ids.device)] = True
    is_dropped = (ids <= top) & table[ids.clamp(0, top)]  # [B, L]
    keep = in_length & ~is_dropped
    new_lengths = keep.sum(dim=1)
    new_width = max(int(new_lengths.max()) if new_lengths.numel() else 0, 1)
    # kept token k of a row goes to column k; dropped ones go to a spare column that is cut off
    target = torch.where(keep, keep.long().cumsum(dim=1) - 1, width)  # [B, L]
    stripped = torch.zeros(ids.shape[0], width + 1, dtype=ids.dtype, device=ids.device)
    stripped.scatter_(1, target, ids)
    return stripped[:, :new_width], new_lengths
