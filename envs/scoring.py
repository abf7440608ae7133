"""The reward an environment scores with: a preset name, a :class:`RewardConfig`, or any reward callable.

A reward callable has the shape of :class:`rxmrl.rewards.MemoryRetentionReward`::

    reward(generated, reference, saved, *, generated_lengths, reference_lengths, saved_lengths,
           modes, running_mean)  -> RewardOutput | [B] tensor | B floats

on padded id tensors (token mode) -- or, in text mode, ``reward.score_texts(generated, reference, saved,
modes=..., running_mean=...)`` when it has that method, else the call itself on lists of strings. A reward
with ``embed_ids`` / ``embed_texts`` gets a running mean of the interactions in memory; one without gets
``running_mean=None`` on every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rxmrl.rewards import (
    DEFAULT_NEW_WEIGHT, RewardConfig, RxlmRewardConfig, SentenceEncoderSimilarity, SimilarityBackend,
    TokenEmbeddingSimilarity, preset_reward,
)
from rxmrl.tokenizer import RxTokenizer

SIMILARITIES: tuple[str, ...] = ("encoder", "token")
_TOKEN_SIMILARITIES: dict[tuple[int, int, int], torch.Tensor] = {}


def token_similarity(tokenizer: RxTokenizer, dim: int = 64, seed: int = 0) -> TokenEmbeddingSimilarity:
    """Mean-pooled *fixed random* token embeddings (``N(0, 1)``, seeded): a cheap bag-of-tokens cosine for
    tests and agents without a model. With a model, pass ``TokenEmbeddingSimilarity(model embedding)``."""
    key = (tokenizer.vocab_size, dim, seed)
    if key not in _TOKEN_SIMILARITIES:
        generator = torch.Generator().manual_seed(seed)
        _TOKEN_SIMILARITIES[key] = torch.randn(tokenizer.vocab_size, dim, generator=generator)
    return TokenEmbeddingSimilarity(_TOKEN_SIMILARITIES[key], encode=tokenizer.encode)


def build_reward(reward: str | RewardConfig | RxlmRewardConfig | Callable[..., Any] = "default",
                 similarity: str | SimilarityBackend = "encoder",
                 tokenizer: RxTokenizer | None = None) -> Callable[..., Any]:
    """A ready reward: presets and configs become their reward (:func:`rxmrl.rewards.preset_reward`) over
    ``similarity`` (``"encoder"``: the frozen sentence encoder; ``"token"``: :func:`token_similarity`; or a
    backend)."""
    configs = (str, RewardConfig, RxlmRewardConfig)
    if callable(reward) and not isinstance(reward, configs):
        return reward
    if not isinstance(reward, configs):
        raise TypeError(f"reward={reward!r}: expected a preset name, a RewardConfig, an RxlmRewardConfig or a "
                        "reward callable")
    if tokenizer is None:
        raise ValueError("a tokenizer is needed to build a reward from a preset")
    if similarity == "encoder":
        backend: SimilarityBackend = SentenceEncoderSimilarity(decode=tokenizer.decode)
    elif similarity == "token":
        backend = token_similarity(tokenizer)
    elif isinstance(similarity, str):
        raise ValueError(f"similarity={similarity!r}: expected one of {', '.join(SIMILARITIES)} or a backend")
    else:
        backend = similarity
    return preset_reward(reward, backend, decode=tokenizer.decode, tokenize=tokenizer.encode)


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
        self.running_mean_new_weight = float(getattr(reward, "running_mean_new_weight", DEFAULT_NEW_WEIGHT))

    def embed_ids(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | None:
        return self.reward.embed_ids(ids, lengths, cache=True) if self.has_running_mean else None

    def embed_texts(self, texts: list[str]) -> torch.Tensor | None:
        return self.reward.embed_texts(texts, cache=True) if self.has_running_mean else None

    def score_ids(self, generated, generated_lengths, reference, reference_lengths, saved, saved_lengths,
                  modes: list[str], running_mean: torch.Tensor | None) -> Scores:
        out = self.reward(generated, reference, saved, generated_lengths=generated_lengths,
                          reference_lengths=reference_lengths, saved_lengths=saved_lengths, modes=modes,
                          running_mean=running_mean)
        return _as_scores(out, len(modes))

    def score_texts(self, generated: list[str], reference: list[str], saved: list[str], modes: list[str],
                    running_mean: torch.Tensor | None) -> Scores:
        score = getattr(self.reward, "score_texts", self.reward)
        return _as_scores(score(generated, reference, saved, modes=modes, running_mean=running_mean), len(modes))


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
