"""What the id rewards share (:class:`~rxmrl.rewards.MemoryRetentionReward`, :class:`~rxmrl.rewards.RxlmReward`):
their call, and the :class:`RewardOutput` it returns.

Both score three batches of token ids -- the answers, their references and the saved data -- with the same
keywords, so the batches are padded and checked once here and each reward writes only its ``_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rxmrl.rewards.ids import as_padded
from rxmrl.rewards.memory_tokens import MemoryTarget


@dataclass
class RewardOutput:
    """``reward`` ``[B]`` in [0, scale] and each component ``[B]`` (unscaled, in [0, 1]) by name
    (:class:`rxmrl.rewards.RxlmReward` returns one too, with its own components and no clipping).

    Components: ``bleu_reference``, ``bleu_saved``, ``cosine_reference``, ``cosine_saved`` (left out when
    no cosine term weighs the saved data),
    ``cosine_running_mean`` (0 where a sample has no running mean), ``length``, and the mode-adjusted group
    values ``bleu`` and ``cosine`` that enter the total.
    """

    reward: torch.Tensor
    components: dict[str, torch.Tensor]

    def row(self, index: int) -> dict[str, float]:
        """One sample's reward and components as plain floats (for ``info`` dicts and logs)."""
        return {"reward": float(self.reward[index]), **{k: float(v[index]) for k, v in self.components.items()}}

    def means(self) -> dict[str, float]:
        """Batch means of the reward and every component over the samples that have it (``NaN``: absent)."""
        return {"reward": float(self.reward.mean()), **{k: float(v.nanmean()) for k, v in self.components.items()}}


class PaddedTriple(NamedTuple):
    """The answers, references and saved data of one call: ``[B, L]`` ids and ``[B]`` lengths each, all on
    the answers' device."""

    gen: torch.Tensor
    gen_len: torch.Tensor
    ref: torch.Tensor
    ref_len: torch.Tensor
    sav: torch.Tensor
    sav_len: torch.Tensor


class IdReward:
    """``reward(generated, reference, saved, **keywords)`` = ``reward.score_ids(...)``; a subclass writes
    ``_score`` (and ``_prepare`` where it cleans ids, e.g. strips special tokens). Unknown keywords are an
    error unless ``ignores_extra_keywords`` (a reward that plugs in wherever a richer one is called)."""

    ignores_extra_keywords = False

    def __call__(self, generated, reference, saved, **kwargs) -> RewardOutput:
        return self.score_ids(generated, reference, saved, **kwargs)

    def score_ids(
        self,
        generated,
        reference,
        saved,
        *,
        generated_lengths: torch.Tensor | None = None,
        reference_lengths: torch.Tensor | None = None,
        saved_lengths: torch.Tensor | None = None,
        modes: str | Sequence[str] = "standard",
        running_mean: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        running_mean_mask: torch.Tensor | None = None,
        memory_targets: Sequence[MemoryTarget | None] | None = None,
        **extra,
    ) -> RewardOutput:
        """Score B answers given as token ids (see the reward's class docstring)."""
        if extra and not self.ignores_extra_keywords:
            raise TypeError(f"{type(self).__name__}.score_ids() got unexpected keyword arguments {sorted(extra)}")
        gen, gen_len = self._prepare(generated, generated_lengths)
        ref, ref_len = self._prepare(reference, reference_lengths, gen.device)
        sav, sav_len = self._prepare(saved, saved_lengths, gen.device)
        batch = gen.shape[0]
        if not (ref.shape[0] == sav.shape[0] == batch):
            raise ValueError(f"batch sizes differ: generated {batch}, reference {ref.shape[0]}, saved {sav.shape[0]}")
        ids = PaddedTriple(gen, gen_len, ref, ref_len, sav, sav_len)
        return self._score(ids, modes, running_mean, running_mean_mask, memory_targets)

    def _prepare(self, ids, lengths: torch.Tensor | None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch as right-padded ids and lengths."""
        return as_padded(ids, lengths, device=device)

    def _score(self, ids: PaddedTriple, modes, running_mean, running_mean_mask, memory_targets) -> RewardOutput:
        raise NotImplementedError
