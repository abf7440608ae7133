"""The one reward builder, and how an environment calls the reward it scores with.

:func:`build_reward` turns a preset name or a :class:`RewardConfig` into a ready reward; the environments,
the MRL trainer, the TRL baseline and evaluation all build theirs here. Every choice has a name:

* the preset (``default``, ``memory``, ``rxlm``, ``rxnn-len``; :data:`rxmrl.rewards.PRESETS`);
* the similarity backend of the cosine terms (:data:`SIMILARITIES`):

  ``encoder``            the frozen sentence encoder (bundled all-MiniLM-L6-v2);
  ``policy-embedding``   mean-pooled token embeddings of a *frozen copy* of a model's embedding matrix
                         (``policy=`` the warm start, a model agent or the matrix), as the reference
                         framework scores;
  ``random-embedding``   mean-pooled fixed random token embeddings (seeded): a cheap bag-of-tokens cosine for
                         tests and for agents without a model;

* the corpus that names the template words of the memory tokens (``word_statistics``: by default the
  curriculum's train split, see :func:`curriculum_word_statistics`).

A reward callable has the shape of :class:`rxmrl.rewards.MemoryRetentionReward`::

    reward(generated, reference, saved, *, generated_lengths, reference_lengths, saved_lengths,
           modes, running_mean[, memory_targets])  -> RewardOutput | [B] tensor | B floats

on padded id tensors (token mode) -- or, in text mode, ``reward.score_texts(generated, reference, saved,
modes=..., running_mean=...)`` when it has that method, else the call itself on lists of strings. A reward
with ``embed_ids`` / ``embed_texts`` gets a running mean of the interactions in memory; one without gets
``running_mean=None`` on every step. A reward whose ``uses_memory_targets`` is true also gets
``memory_targets=``, one per sample, from its ``memory_targets(episode, steps, statistics)`` at reset.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from rxmrl.data import CurriculumValidationError, Episode, load_curriculum
from rxmrl.rewards import (
    DEFAULT_NEW_WEIGHT, MemoryTarget, RewardConfig, RxlmRewardConfig, SentenceEncoderSimilarity,
    SimilarityBackend, TokenEmbeddingSimilarity, WordStatistics, preset_reward,
)
from rxmrl.tokenizer import RxTokenizer

if TYPE_CHECKING:
    from rxmrl.envs.episodes import EpisodeSampler

SIMILARITIES: tuple[str, ...] = ("encoder", "policy-embedding", "random-embedding")
_RANDOM_EMBEDDINGS: dict[tuple[int, int, int], torch.Tensor] = {}


def token_similarity(tokenizer: RxTokenizer, dim: int = 64, seed: int = 0) -> TokenEmbeddingSimilarity:
    """``random-embedding``: mean-pooled *fixed random* token embeddings (``N(0, 1)``, seeded)."""
    key = (tokenizer.vocab_size, dim, seed)
    if key not in _RANDOM_EMBEDDINGS:
        generator = torch.Generator().manual_seed(seed)
        _RANDOM_EMBEDDINGS[key] = torch.randn(tokenizer.vocab_size, dim, generator=generator)
    return TokenEmbeddingSimilarity(_RANDOM_EMBEDDINGS[key], encode=tokenizer.encode)


def embedding_table(policy: Any) -> torch.Tensor:
    """The token-embedding matrix ``[V, E]`` of ``policy``: a :class:`~rxmrl.model.ReactiveTransformer`
    (``.embedding``), a Hugging Face model (``get_input_embeddings()``), a model agent (its ``.model``), an
    ``nn.Embedding`` or the matrix itself."""
    if isinstance(policy, torch.Tensor):
        return policy
    if isinstance(policy, torch.nn.Embedding):
        return policy.weight
    if isinstance(getattr(policy, "embedding", None), torch.nn.Embedding):
        return policy.embedding.weight
    if callable(getattr(policy, "get_input_embeddings", None)):
        return policy.get_input_embeddings().weight
    if getattr(policy, "model", None) is not None:  # an agent that answers with a model
        return embedding_table(policy.model)
    raise ValueError(f"similarity='policy-embedding' needs a model with token embeddings; "
                     f"{getattr(policy, 'name', type(policy).__name__)!r} has none")


def similarity_backend(similarity: str | SimilarityBackend, tokenizer: RxTokenizer, *,
                       policy: Any = None, cache_all: bool = False) -> SimilarityBackend:
    """The backend a similarity name stands for (see the module docstring); a backend passes through.
    ``cache_all``: the sentence encoder memoises every text it embeds, answers too (token pooling is cheap
    and never caches)."""
    if not isinstance(similarity, str):
        return similarity
    if similarity == "encoder":
        return SentenceEncoderSimilarity(decode=tokenizer.decode, cache_all=cache_all)
    if similarity == "random-embedding":
        return token_similarity(tokenizer)
    if similarity == "policy-embedding":
        if policy is None:
            raise ValueError("similarity='policy-embedding' needs the model whose embedding it copies (policy=); "
                             "without a model use 'random-embedding' or 'encoder'")
        return TokenEmbeddingSimilarity(embedding_table(policy), encode=tokenizer.encode)
    hint = (" ('token' is gone: say 'policy-embedding' for a frozen copy of the model's embedding or "
            "'random-embedding' for fixed random ones)" if similarity == "token" else "")
    raise ValueError(f"similarity={similarity!r}: expected one of {', '.join(SIMILARITIES)} or a backend{hint}")


def build_reward(reward: str | RewardConfig | RxlmRewardConfig | Callable[..., Any] = "default",
                 similarity: str | SimilarityBackend = "encoder",
                 tokenizer: RxTokenizer | None = None, *, policy: Any = None) -> Callable[..., Any]:
    """A ready reward: presets and configs become their reward (:func:`rxmrl.rewards.preset_reward`) over the
    named similarity backend; callables pass through.

    ``policy`` is read only by ``similarity="policy-embedding"``: the model (or model agent, or matrix) whose
    token embeddings a frozen copy is taken of (:func:`embedding_table`), e.g. the MRL warm start."""
    configs = (str, RewardConfig, RxlmRewardConfig)
    if callable(reward) and not isinstance(reward, configs):
        return reward
    if not isinstance(reward, configs):
        raise TypeError(f"reward={reward!r}: expected a preset name, a RewardConfig, an RxlmRewardConfig or a "
                        "reward callable")
    if tokenizer is None:
        raise ValueError("a tokenizer is needed to build a reward from a preset")
    backend = similarity_backend(similarity, tokenizer, policy=policy)
    return preset_reward(reward, backend, decode=tokenizer.decode, tokenize=tokenizer.encode)


@functools.lru_cache(maxsize=16)
def curriculum_word_statistics(source: str | os.PathLike, config: str) -> WordStatistics:
    """Word statistics of a curriculum: every interaction of the train split of ``config`` at ``source``
    (once per process). The template words of the memory tokens come from here, so training, validation and
    evaluation on the same data score with the same memory tokens."""
    return WordStatistics.from_episodes(load_curriculum(source, split="train", config=config))


def memory_targets_of(reward: Callable[..., Any], episodes: Sequence[Episode], steps: int,
                      statistics: WordStatistics | None) -> list[list[MemoryTarget]] | None:
    """``targets[b][i]``: what step ``i`` of episode ``b`` must recall, for a reward that asks for it."""
    if not getattr(reward, "uses_memory_targets", False):
        return None
    return [reward.memory_targets(e, steps, statistics) for e in episodes]


@dataclass
class Scores:
    """``reward`` ``[B]`` float32 and each component ``[B]`` by name."""

    reward: torch.Tensor
    components: dict[str, torch.Tensor]


class RewardScorer:
    """Calls a reward callable uniformly on ids or texts and embeds interactions for the running mean.

    Running-mean embeddings are asked for with ``cache=True``: the interaction folded in before step i is
    the saved data step i-1 was scored against, so a caching backend embeds it once. The running mean's
    new weight is the reward's ``running_mean_new_weight`` where it has one (``RxlmReward``: 1 - decay).
    """

    def __init__(self, reward: Callable[..., Any]) -> None:
        self.reward = reward
        self.has_running_mean = hasattr(reward, "embed_ids") and hasattr(reward, "embed_texts")
        self.uses_memory_targets = bool(getattr(reward, "uses_memory_targets", False))
        self.running_mean_new_weight = float(getattr(reward, "running_mean_new_weight", DEFAULT_NEW_WEIGHT))

    def embed_ids(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        return self.reward.embed_ids(ids, lengths, cache=True) if self.has_running_mean else None

    def embed_texts(self, texts: list[str]) -> torch.Tensor | None:
        return self.reward.embed_texts(texts, cache=True) if self.has_running_mean else None

    def _extra(self, memory_targets: Sequence[MemoryTarget | None] | None) -> dict[str, Any]:
        return {"memory_targets": memory_targets} if self.uses_memory_targets else {}

    def score_ids(self, generated, generated_lengths, reference, reference_lengths, saved, saved_lengths,
                  modes: list[str], running_mean: torch.Tensor | None,
                  memory_targets: Sequence[MemoryTarget | None] | None = None,
                  running_mean_mask: torch.Tensor | None = None) -> Scores:
        extra = self._extra(memory_targets)
        if running_mean_mask is not None:  # rows of a batch without a mean yet (long range, step 1)
            extra["running_mean_mask"] = running_mean_mask
        out = self.reward(generated, reference, saved, generated_lengths=generated_lengths,
                          reference_lengths=reference_lengths, saved_lengths=saved_lengths, modes=modes,
                          running_mean=running_mean, **extra)
        return _as_scores(out, len(modes))

    def score_texts(self, generated: list[str], reference: list[str], saved: list[str], modes: list[str],
                    running_mean: torch.Tensor | None,
                    memory_targets: Sequence[MemoryTarget | None] | None = None,
                    running_mean_mask: torch.Tensor | None = None) -> Scores:
        score = getattr(self.reward, "score_texts", self.reward)
        extra = self._extra(memory_targets)
        if running_mean_mask is not None:  # rows of a batch without a mean yet (long range, step 1)
            extra["running_mean_mask"] = running_mean_mask
        out = score(generated, reference, saved, modes=modes, running_mean=running_mean, **extra)
        return _as_scores(out, len(modes))


def _as_scores(out: Any, batch: int) -> Scores:
    if hasattr(out, "reward") and hasattr(out, "components"):
        reward, components = out.reward, dict(out.components)
    else:
        reward, components = out, {}
    reward = torch.as_tensor(reward, dtype=torch.float32).reshape(-1).cpu()
    if reward.shape != (batch,):
        raise ValueError(f"the reward returned {tuple(reward.shape)} values for a batch of {batch}")
    if not bool(torch.isfinite(reward).all()):
        raise FloatingPointError(f"the reward returned non-finite values: {reward.tolist()}")
    return Scores(reward, {k: torch.as_tensor(v).reshape(-1).float().cpu() for k, v in components.items()})


class StatisticsSource:
    """The :class:`WordStatistics` an env's memory tokens use: ``given``, else those of the curriculum's train
    split of the env's data config, else (hand-made episodes, or a source without a train split) those of
    the env's own episodes. Computed on first use: rewards without memory tokens never load them."""

    def __init__(self, source, config: str | None, steps: int, episodes, sampler: EpisodeSampler,
                 given: WordStatistics | None = None) -> None:
        self._source, self._config, self._steps = source, config, steps
        self._from_episodes = episodes is not None
        self._sampler, self._value = sampler, given

    def get(self) -> WordStatistics:
        if self._value is None:
            if not self._from_episodes:
                try:
                    self._value = curriculum_word_statistics(str(self._source), self._config or f"steps-{self._steps}")
                except (CurriculumValidationError, FileNotFoundError):
                    pass
            if self._value is None:
                self._value = WordStatistics.from_episodes(e for pool in self._sampler.pools.values() for e in pool)
        return self._value
