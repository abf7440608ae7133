"""How an environment holds a batch of answers and interactions: as padded token ids or as texts.

:class:`~rxmrl.envs.BatchedMrlEnv` steps, scores and keeps the running mean through the few operations
here, so one loop serves the trainer (:class:`IdRows`, ``[B, L]`` ids) and ``MrlEnv``'s text mode
(:class:`TextRows`, one string per row: the reward scores the strings themselves, as a text agent's
answer is never tokenised for it). An interaction is ``query + answer``: ids concatenated, or the two
texts joined by a space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rxmrl.envs.padded import PaddedIds, concat_padded, select_rows
from rxmrl.envs.scoring import RewardScorer, Scores
from rxmrl.tokenizer import RxTokenizer

SAVED_DATA: tuple[str, ...] = ("conversation", "as_written")
"""What the reward scores a step against: the conversation as the data has it, or as written into memory."""


class MalformedActionError(ValueError):
    """An action of the wrong type, length or token ids; the episode is unchanged and the step can be retried."""


def check_saved_data(saved_data: str) -> str:
    if saved_data not in SAVED_DATA:
        raise ValueError(f"saved_data={saved_data!r}: expected one of {', '.join(SAVED_DATA)}")
    return saved_data


class IdRows:
    """Rows as :class:`PaddedIds` on ``device``: queries ``[BOS][Q] q``, answers ``[A] a [EOS]``."""

    def __init__(self, tokenizer: RxTokenizer, device: torch.device) -> None:
        self.tokenizer, self.device = tokenizer, device

    def queries(self, texts: Sequence[str]) -> PaddedIds:
        return PaddedIds.from_lists(self.tokenizer.encode_query_batch(texts), self.device)

    def answers(self, texts: Sequence[str]) -> PaddedIds:
        return PaddedIds.from_lists(self.tokenizer.encode_answer_batch(texts), self.device)

    def concat(self, first: PaddedIds, second: PaddedIds) -> PaddedIds:
        return concat_padded(first, second)

    def select(self, condition: torch.Tensor, if_true: PaddedIds, if_false: PaddedIds) -> PaddedIds:
        return select_rows(condition, if_true, if_false)

    def repeat(self, rows: PaddedIds, repeat: int) -> PaddedIds:
        return PaddedIds(rows.ids.repeat_interleave(repeat, 0), rows.lengths.repeat_interleave(repeat, 0))

    def score(self, scorer: RewardScorer, answers: PaddedIds, reference: PaddedIds, saved: PaddedIds,
              modes: list[str], mean: tuple[torch.Tensor | None, torch.Tensor | None], targets) -> Scores:
        """One reward call; ``mean`` is the running mean's ``(value, present)``."""
        values, present = mean
        return scorer.score_ids(answers.ids, answers.lengths, reference.ids, reference.lengths, saved.ids,
                                saved.lengths, modes, values, targets, present)

    def embed(self, scorer: RewardScorer, rows: PaddedIds) -> torch.Tensor | None:
        return scorer.embed_ids(rows.ids, rows.lengths)

    def texts(self, rows: PaddedIds) -> list[str]:
        return self.tokenizer.decode_batch(rows.to_lists())

    def validate(self, answers: Any, lengths: torch.Tensor | None, batch: int, vocab_size: int,
                 max_tokens: int) -> PaddedIds:
        """``[B, L]`` ids + ``[B]`` lengths (or :class:`PaddedIds`, or id lists) of real ids, or a clear error."""
        answers, lengths = _as_tensor(answers, lengths)
        if (answers.dim() != 2 or answers.shape[0] != batch or answers.is_floating_point() or answers.is_complex()
                or answers.dtype == torch.bool):
            raise MalformedActionError(f"answers have shape {tuple(answers.shape)} and dtype {answers.dtype}, "
                                       f"expected an integer tensor of shape ({batch}, L)")
        answers = answers.to(self.device, torch.long)
        lengths = (torch.full((batch,), answers.shape[1], dtype=torch.long) if lengths is None
                   else torch.as_tensor(lengths)).to(self.device, torch.long)
        if lengths.shape != (batch,) or bool((lengths < 0).any()) or bool((lengths > answers.shape[1]).any()):
            raise MalformedActionError(f"answer lengths {lengths.tolist()} must be {batch} values in "
                                       f"[0, {answers.shape[1]}]")
        if bool((lengths > max_tokens).any()):
            raise MalformedActionError(f"answer lengths {lengths.tolist()}: expected at most {max_tokens} tokens")
        padded = PaddedIds(answers, lengths)
        real = answers[padded.mask()]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= vocab_size):
            raise MalformedActionError(f"answer ids span [{int(real.min())}, {int(real.max())}], expected ids in "
                                       f"[0, {vocab_size})")
        return padded


def _as_tensor(answers: Any, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(answers, (list, tuple)):
        answers = PaddedIds.from_lists(answers)
    if isinstance(answers, PaddedIds):
        answers, lengths = answers.ids, answers.lengths
    if isinstance(answers, np.ndarray):
        answers = torch.from_numpy(answers)
    if not isinstance(answers, torch.Tensor):
        raise MalformedActionError(f"answers are {type(answers).__name__}, expected a [B, L] id tensor, "
                                   "PaddedIds or lists of ids")
    return answers, lengths


class TextRows:
    """Rows as lists of strings, one per episode (``MrlEnv``'s text mode)."""

    def queries(self, texts: Sequence[str]) -> list[str]:
        return list(texts)

    answers = queries

    def concat(self, first: Sequence[str], second: Sequence[str]) -> list[str]:
        return [f"{query} {answer}" for query, answer in zip(first, second, strict=True)]

    def select(self, condition: torch.Tensor, if_true: Sequence[str], if_false: Sequence[str]) -> list[str]:
        return [a if keep else b for keep, a, b in zip(condition.tolist(), if_true, if_false, strict=True)]

    def repeat(self, rows: Sequence[str], repeat: int) -> list[str]:
        return [row for row in rows for _ in range(repeat)]

    def score(self, scorer: RewardScorer, answers: list[str], reference: list[str], saved: list[str],
              modes: list[str], mean: tuple[torch.Tensor | None, torch.Tensor | None], targets) -> Scores:
        """One reward call on the strings; the running mean's mask only where some row has no mean yet."""
        values, present = mean
        mask = None if present is None or bool(present.all()) else present
        return scorer.score_texts(answers, reference, saved, modes, values, targets, mask)

    def embed(self, scorer: RewardScorer, rows: list[str]) -> torch.Tensor | None:
        return scorer.embed_texts(list(rows))

    def texts(self, rows: list[str]) -> list[str]:
        return list(rows)

    def validate(self, answers: Any, lengths: None, batch: int, vocab_size: int, max_tokens: int) -> list[str]:
        if not isinstance(answers, (list, tuple)) or len(answers) != batch or not all(
                isinstance(a, str) for a in answers):
            raise MalformedActionError(f"answers are {type(answers).__name__}, expected {batch} strings (text rows)")
        return list(answers)
