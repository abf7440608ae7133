"""Token-id layout of queries, answer prompts and interactions, and padding of batches.

Every component builds these sequences through the functions here, so ``[A]`` is never doubled::

    query        = [BOS] [Q] q...
    answer       = [A] a... [EOS]
    prompt       = query + [A]                 (what the decoder reads before answering)
    interaction  = query + [A] + a... + [EOS]  (what the memory encoder reads)

A turn the model answered is written in one of two forms (``RxTConfig.interaction_write``, where the choice
is documented): ``closed``, the interaction above; or ``as-generated``, ``query + [A]`` and the generated ids
as they are ([EOS] only if generated, [PAD] and other special ids kept), which is what the reference writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rxmrl.special_tokens import ANSWER_ID, EOS_ID, PAD_ID

Ids = Sequence[int] | Tensor


def _as_list(ids: Ids) -> list[int]:
    return ids.tolist() if isinstance(ids, Tensor) else list(ids)


def query_tokens(query_ids: Ids) -> list[int]:
    """The query without padding or a trailing ``[A]``."""
    ids = [t for t in _as_list(query_ids) if t != PAD_ID]
    while ids and ids[-1] == ANSWER_ID:
        ids.pop()
    return ids


def answer_tokens(answer_ids: Ids) -> list[int]:
    """Answer content: leading ``[A]`` removed, cut at the first ``[EOS]``, padding removed."""
    ids = [t for t in _as_list(answer_ids) if t != PAD_ID]
    if ids and ids[0] == ANSWER_ID:
        ids = ids[1:]
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return ids


def answer_prompt(query_ids: Ids) -> list[int]:
    """``query + [A]``: the decoder's input before the first answer token."""
    return query_tokens(query_ids) + [ANSWER_ID]


def interaction_ids(query_ids: Ids, answer_ids: Ids, max_len: int | None = None) -> list[int]:
    """``query + [A] + answer + [EOS]`` (truncated to ``max_len``, keeping the final ``[EOS]``)."""
    ids = answer_prompt(query_ids) + answer_tokens(answer_ids) + [EOS_ID]
    if max_len is not None and len(ids) > max_len:
        ids = ids[: max_len - 1] + [EOS_ID]
    return ids


def written_interaction(query_ids: Ids, generated_ids: Ids, write: str = "closed") -> list[int]:
    """What memory reads for a turn: ``generated_ids`` are the answer as generated (no opening ``[A]``),
    ``write`` one of :data:`~rxmrl.model.config.INTERACTION_WRITES`."""
    if write == "as-generated":
        return answer_prompt(query_ids) + _as_list(generated_ids)
    if write == "closed":
        return interaction_ids(query_ids, generated_ids)
    raise ValueError(f"write={write!r}, expected 'closed' or 'as-generated'")


def pad_batch(
    sequences: Sequence[Ids], side: str = "right", pad_id: int = PAD_ID, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Pad id lists to ``ids [B, T]`` and ``mask [B, T]`` (True = real token), on the ``side`` given."""
    if side not in ("left", "right"):
        raise ValueError(f"side={side!r}, expected 'left' or 'right'")
    lists = [_as_list(s) for s in sequences]
    if not lists or min(len(s) for s in lists) == 0:
        raise ValueError("pad_batch needs a non-empty batch of non-empty sequences")
    length = max(len(s) for s in lists)
    ids = torch.full((len(lists), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lists), length), dtype=torch.bool)
    for row, seq in enumerate(lists):
        cols = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = True
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))
