"""Shared pieces of the environment tests: hand-made episodes and a reward that records its inputs."""

from __future__ import annotations

import torch

from rxmrl.data import Episode, Fact, Interaction, default_tokenizer
from rxmrl.envs import build_reward


def hand_made_episode(steps: int = 4, strategy: str | None = "cumulative", tag: str = "") -> Episode:
    """Saved interaction about a red kite, then follow-ups whose reference answers repeat one fact each."""
    follow_ups = [Interaction(f"Question {k}{tag} about the kite?", f"The kite number {k}{tag} was red.")
                  for k in range(steps)]
    facts = [[Fact("red", 0)] for _ in range(steps)]
    return Episode(f"Tell me about the kite{tag}.", f"Tom{tag} had a red kite in the park.", follow_ups, facts,
                   strategy)


class RecordingReward:
    """A real reward (frozen random token embeddings) that remembers what each call scored."""

    def __init__(self) -> None:
        self.inner = build_reward("default", "random-embedding", default_tokenizer())
        self.calls: list[dict] = []

    def embed_ids(self, ids, lengths=None, *, cache=False):
        return self.inner.embed_ids(ids, lengths, cache=cache)

    def embed_texts(self, texts, *, cache=False):
        return self.inner.embed_texts(texts, cache=cache)

    def __call__(self, generated, reference, saved, **kwargs):
        self.calls.append(dict(generated=generated, reference=reference, saved=saved, **kwargs))
        return self.inner(generated, reference, saved, **kwargs)

    def score_texts(self, generated, reference, saved, **kwargs):
        self.calls.append(dict(generated=generated, reference=reference, saved=saved, **kwargs))
        return self.inner.score_texts(generated, reference, saved, **kwargs)


def expected_running_means(embeddings: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """Running mean before each step: none at step 0, then m <- e on the first update, 0.8 e + 0.2 m after."""
    means: list[torch.Tensor | None] = [None]
    mean = None
    for embedding in embeddings:
        mean = embedding if mean is None else 0.8 * embedding + 0.2 * mean
        means.append(mean)
    return means


def hand_made_long_range_episode(steps: int = 3, tag: str = "") -> Episode:
    """A saved story about Tom's red kite, a topic switch to Mia's blue cup, questions about Mia, then the final
    question about Tom's kite: its fact ("red") was stated only in interaction 0."""
    follow_ups = [Interaction(f"Now tell me about Mia{tag}.", f"Mia{tag} had a blue cup.")]
    follow_ups += [Interaction(f"What colour was Mia's cup {k}{tag}?", f"Mia's cup {k}{tag} was blue.")
                   for k in range(1, steps - 1)]
    follow_ups.append(Interaction(f"Think back to Tom{tag}. What colour was his kite?", f"Tom{tag}'s kite was red."))
    facts = [[]] + [[Fact("blue", 1)] for _ in range(1, steps - 1)] + [[Fact("red", 0)]]
    return Episode(f"Tell me about Tom{tag}.", f"Tom{tag} had a red kite in the park.", follow_ups, facts,
                   "long_range")
