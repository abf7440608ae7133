"""Episode pools per strategy and the order an environment draws them in.

A strategy picks the pool an episode comes from: ``cumulative`` (config ``steps-N``), ``long_range``
(``steps-N-lr``), or ``mixed`` (long-range with probability ``long_range_ratio``, drawn per episode from the
environment's seeded generator). Each pool is visited ``shuffled`` (a fresh permutation per pass, drawn from
the same generator, so a seeded reset replays the same episodes) or ``sequential`` (row order: evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rxmrl.data import Episode, load_curriculum, parse_config

STRATEGIES: tuple[str, ...] = ("cumulative", "long_range", "mixed")
ORDERS: tuple[str, ...] = ("shuffled", "sequential")


@dataclass(frozen=True)
class DrawnEpisode:
    """An episode cut to the stage's steps, whether it is long-range, and its row in its pool."""

    episode: Episode
    long_range: bool
    index: int


def is_long_range(episode: Episode, default: bool = False) -> bool:
    """An episode's own ``strategy`` when it has one, else ``default`` (its config's)."""
    return default if episode.strategy is None else episode.strategy == "long_range"


def cut_to_steps(episode: Episode, steps: int, long_range: bool, where: str = "episode") -> Episode:
    """The episode as a stage of ``steps`` follow-ups plays it: the one cut every env and trainer uses.

    A cumulative row keeps its first ``steps`` follow-ups. A long-range row keeps its first ``steps - 1``
    (the topic switch and what follows it) and its final question, which asks about the first interaction:
    a shorter long-range episode, never one that lost its point. With follow-ups ``f_0 .. f_{n-1}``::

        cumulative:  f_0, f_1, .., f_{steps-1}
        long range:  f_0, f_1, .., f_{steps-2}, f_{n-1}

    Facts go with their follow-ups; a fact of the final question citing a dropped interaction is dropped
    with it (its source would point at an interaction the stage never shows). A row shorter than the stage
    is refused: episodes are never silently cut to the shortest of a batch.
    """
    count = episode.num_follow_ups
    if count < steps:
        raise ValueError(f"{where} has {count} follow-ups, needs {steps}")
    if count == steps:
        return episode
    keep = [*range(steps - 1), count - 1] if long_range else list(range(steps))
    facts = None
    if episode.facts is not None:  # interaction k >= 1 is follow-up k - 1; a kept follow-up j sees 0..j
        shown = {0, *(j + 1 for j in keep)}
        facts = [[fact for fact in episode.facts[j] if fact.source in shown] for j in keep]
    return replace(episode, interactions=[episode.interactions[j] for j in keep], facts=facts)


class EpisodeSampler:
    """Draws episodes for one curriculum stage from a cumulative and/or a long-range pool."""

    def __init__(self, pools: dict[bool, Sequence[Episode]], steps: int, strategy: str = "cumulative",
                 long_range_ratio: float = 0.5, order: str = "shuffled") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if order not in ORDERS:
            raise ValueError(f"order={order!r}: expected one of {', '.join(ORDERS)}")
        if not 0.0 <= long_range_ratio <= 1.0:
            raise ValueError(f"long_range_ratio={long_range_ratio}: expected a probability in [0, 1]")
        needed = {"cumulative": [False], "long_range": [True], "mixed": [False, True]}[strategy]
        if strategy == "mixed" and long_range_ratio in (0.0, 1.0):
            needed = [long_range_ratio == 1.0]
        for long_range in needed:
            if not pools.get(long_range):
                kind = "long-range" if long_range else "cumulative"
                raise ValueError(f"strategy={strategy!r} needs {kind} episodes, but none were given")
        self.pools = {lr: [cut_to_steps(e, steps, lr, f"{'long-range' if lr else 'cumulative'} episode {i}")
                           for i, e in enumerate(pools.get(lr, ()))] for lr in (False, True)}
        self.steps, self.strategy, self.long_range_ratio, self.order = steps, strategy, long_range_ratio, order
        self._orders: dict[bool, np.ndarray] = {}
        self._positions = {False: 0, True: 0}

    def __len__(self) -> int:
        return sum(len(pool) for pool in self.pools.values())

    def restart(self) -> None:
        """Start every pool from its first row (called by a seeded reset)."""
        self._orders.clear()
        self._positions = {False: 0, True: 0}

    def draw(self, rng: np.random.Generator) -> DrawnEpisode:
        long_range = self._choose_pool(rng)
        pool = self.pools[long_range]
        position = self._positions[long_range]
        if long_range not in self._orders or position >= len(pool):
            size = len(pool)
            self._orders[long_range] = rng.permutation(size) if self.order == "shuffled" else np.arange(size)
            position = 0
        index = int(self._orders[long_range][position])
        self._positions[long_range] = position + 1
        return DrawnEpisode(pool[index], long_range, index)

    def _choose_pool(self, rng: np.random.Generator) -> bool:
        if self.strategy == "mixed":
            return bool(rng.random() < self.long_range_ratio)
        return self.strategy == "long_range"


def load_pools(source: str | os.PathLike, steps: int | None, split: str, strategy: str, *,
               config: str | None = None, num_episodes: int | None = None,
               seed: int = 0) -> tuple[int, dict[bool, list[Episode]]]:
    """``(steps, pools)`` for a strategy: the cumulative pool from ``config`` (default ``steps-N``), the
    long-range pool from ``steps-N-lr`` with N the data config's follow-ups."""
    if config is None and steps is None:
        raise ValueError("give steps=N or config='steps-N'")
    data_steps, config_lr = parse_config(config) if config is not None else (steps, False)
    steps = data_steps if steps is None else steps
    if steps > data_steps:
        raise ValueError(f"steps={steps} but config {config!r} has only {data_steps} follow-ups per episode")
    want = {"cumulative": [False], "long_range": [True], "mixed": [False, True]}[strategy] if not config_lr else [True]
    pools = {}
    for long_range in want:
        name = f"steps-{data_steps}" + ("-lr" if long_range else "")
        rows = load_curriculum(source, split=split, config=name, num_episodes=num_episodes, seed=seed)
        pools[long_range] = list(rows)
    return steps, pools


def pools_from_episodes(episodes: Sequence[Episode]) -> dict[bool, list[Episode]]:
    """Hand-made episodes sorted into pools by their ``strategy`` (``None`` counts as cumulative)."""
    pools: dict[bool, list[Episode]] = {False: [], True: []}
    for episode in episodes:
        pools[is_long_range(episode)].append(episode)
    return pools


def make_sampler(source, steps, split, config, strategy, long_range_ratio, episodes, num_episodes, data_seed,
                 order) -> EpisodeSampler:
    """The episode sampler of an env: hand-made ``episodes`` or the curriculum data of a stage."""
    if episodes is not None:
        pools = pools_from_episodes(episodes)
        if strategy is None:  # the episodes' own strategies: one kind, or both mixed
            strategy = "mixed" if pools[False] and pools[True] else "long_range" if pools[True] else "cumulative"
        if steps is None:
            steps = min(e.num_follow_ups for e in episodes)
        return EpisodeSampler(pools, steps, strategy, long_range_ratio, order)
    if strategy is None:
        strategy = "long_range" if (config or "").endswith("-lr") else "cumulative"
    steps, pools = load_pools(source, steps, split, strategy, config=config, num_episodes=num_episodes,
                              seed=data_seed)
    return EpisodeSampler(pools, steps, strategy, long_range_ratio, order)
