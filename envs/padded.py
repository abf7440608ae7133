"""Right-padded token-id batches (``[B, L]`` ids + ``[B]`` lengths) and the few operations the batched
environment needs on them, each one vectorised over the batch (no per-token Python loops)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rxmrl.special_tokens import PAD_ID


@dataclass(frozen=True)
class PaddedIds:
    """``ids`` ``[B, L]`` long, right-padded with ``[PAD]``; ``lengths`` ``[B]`` long (real tokens per row)."""

    ids: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], device: torch.device | str | None = None) -> PaddedIds:
        tensors = [torch.as_tensor(list(row), dtype=torch.long) for row in rows]
        lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
        if not tensors or int(lengths.max()) == 0:
            return cls(torch.full((len(tensors), 1), PAD_ID, dtype=torch.long, device=device), lengths.to(device))
        ids = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=PAD_ID)  # (B, L)
        return cls(ids.to(device), lengths.to(device))

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str) -> PaddedIds:
        return PaddedIds(self.ids.to(device), self.lengths.to(device))

    def to_lists(self) -> list[list[int]]:
        return [row[:n] for row, n in zip(self.ids.tolist(), self.lengths.tolist())]

    def mask(self) -> torch.Tensor:
        """``[B, L]`` bool, True on real tokens."""
        return torch.arange(self.ids.shape[1], device=self.ids.device) < self.lengths.unsqueeze(1)

    def trimmed(self) -> PaddedIds:
        """The same rows cut to the longest length (at least one column)."""
        width = max(int(self.lengths.max()) if len(self) else 0, 1)
        return PaddedIds(self.ids[:, :width], self.lengths)


def concat_padded(first: PaddedIds, second: PaddedIds) -> PaddedIds:
    """Row-wise ``first[b] + second[b]`` (e.g. query ids + answer ids = the interaction written to memory)."""
    batch, first_width = first.ids.shape
    second_width = second.ids.shape[1]
    lengths = first.lengths + second.lengths
    width = max(int(lengths.max()) if batch else 0, 1)
    spare = width  # column that receives padding positions and is cut off
    first_pos = torch.arange(first_width, device=first.ids.device).expand(batch, -1)  # (B, L1)
    first_target = torch.where(first_pos < first.lengths.unsqueeze(1), first_pos, spare)
    second_pos = torch.arange(second_width, device=first.ids.device).expand(batch, -1)  # (B, L2)
    second_target = torch.where(second_pos < second.lengths.unsqueeze(1), second_pos + first.lengths.unsqueeze(1), spare)
    out = torch.full((batch, width + 1), PAD_ID, dtype=torch.long, device=first.ids.device)
    out.scatter_(1, first_target, first.ids)
    out.scatter_(1, second_target, second.ids)
    out[:, spare] = PAD_ID
    return PaddedIds(out[:, :width], lengths)


def select_rows(condition: torch.Tensor, if_true: PaddedIds, if_false: PaddedIds) -> PaddedIds:
    """Row ``b`` of ``if_true`` where ``condition[b]``, else of ``if_false``."""
    width = max(if_true.ids.shape[1], if_false.ids.shape[1])
    pad = lambda ids: torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=PAD_ID)  # noqa: E731
    ids = torch.where(condition.unsqueeze(1), pad(if_true.ids), pad(if_false.ids))  # (B, W)
    return PaddedIds(ids, torch.where(condition, if_true.lengths, if_false.lengths)).trimmed()
