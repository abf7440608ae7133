"""Curriculum stages: which episodes each stage trains on, in which order, and where a run stands.

A stage draws episodes of its ``steps`` (from the ``steps-N`` subset, cumulative and/or ``steps-N-lr``):
``mixed`` takes ``round(ratio·n)`` long-range episodes and the rest cumulative. Epoch ``e`` of stage ``s``
visits them in the permutation seeded by ``(seed, s, e)``, in batches of ``batch_episodes`` -- the last,
smaller batch included (nothing is dropped). :class:`CurriculumState` is the run's position (stage, epoch,
batch), the best validation value per stage and the STM carried for random resets; the trainer saves
it in every checkpoint, so a resumed run continues with exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Any

import torch

from rxmrl.config import ConfigError
from rxmrl.data import Episode, load_curriculum
from rxmrl.training.mrl.config import StageConfig


@dataclass
class StageData:
    """Episodes of one stage and split, with a long-range flag per episode."""

    episodes: list[Episode]
    long_range: list[bool]

    def __len__(self) -> int:
        return len(self.episodes)


def load_stage_data(stage: StageConfig, source: str, split: str, num_episodes: int | None,
                    seed: int = 0) -> StageData:
    """The stage's episodes (see the module docstring); validation uses the same strategy mix."""
    data_steps = stage.data_steps or stage.steps
    ratio = {"cumulative": 0.0, "long_range": 1.0, "mixed": stage.long_range_ratio}[stage.strategy]
    kinds = [kind for kind, used in ((False, ratio < 1.0), (True, ratio > 0.0)) if used]
    pools: dict[bool, list[Episode]] = {}
    for long_range in kinds:
        pools[long_range] = list(load_curriculum(source, data_steps, split, long_range=long_range,
                                                 num_episodes=num_episodes, seed=seed))
    total = num_episodes if num_episodes is not None else len(next(iter(pools.values())))
    n_long = round(ratio * total)
    chosen = [(e, True) for e in pools.get(True, [])[:n_long]] + \
             [(e, False) for e in pools.get(False, [])[: total - n_long]]
    if not chosen:
        raise ValueError(f"stage with steps={stage.steps} found no episodes in {source!r} split {split!r}")
    return StageData([e for e, _ in chosen], [lr for _, lr in chosen])


def epoch_batches(num_episodes: int, batch_size: int, seed: int, stage: int, epoch: int) -> list[list[int]]:
    """Index batches of one epoch: a seeded permutation cut into ``batch_size`` chunks, the last one smaller."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + stage * 1_009 + epoch)
    order = torch.randperm(num_episodes, generator=generator).tolist()
    return [order[i:i + batch_size] for i in range(0, num_episodes, batch_size)]


def rank_shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """This rank's episodes of a global batch: every ``world_size``-th, starting at ``rank``.

    Under ``torchrun`` each rank rolls out a different shard and DDP averages the gradients, so a global
    batch of ``B`` episodes costs each of ``W`` ranks ``⌈B / W⌉`` rollouts. Shards differ in size by at most
    one episode (a last batch with fewer episodes than ranks gives the extra ranks a repeated one, so no rank
    sits idle while the others wait in a collective); :func:`rank_minibatches` keeps the number of optimizer steps equal across ranks.
    """
    if len(indices) <= rank:  # a last batch smaller than the world: this rank repeats one episode
        return [indices[rank % len(indices)]]
    return indices[rank::world_size]


def rank_minibatches(size: int, global_episodes: int, steps: int, world_size: int, minibatch_size: int,
                     order: torch.Tensor) -> list[torch.Tensor]:
    """Minibatch indices into this rank's rollout of ``size`` samples for one PPO epoch.

    Every rank takes the same number of optimizer steps (DDP's collectives must match): as many as the
    largest shard, ``⌈global_episodes / world_size⌉ · steps`` samples, needs. A smaller shard wraps around
    its own permutation ``order`` to fill them (at most ``steps`` samples reused). With one process this is
    plain consecutive chunks of ``order``, the last one smaller.
    """
    target = math.ceil(global_episodes / world_size) * steps
    return [order[torch.arange(start, min(start + minibatch_size, target)) % size]
            for start in range(0, target, minibatch_size)]


@dataclass
class CurriculumState:
    """Where the run stands; saved in every checkpoint (``curriculum``)."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0  # batches of this epoch already trained
    iterations: int = 0  # rollouts trained in total
    best: dict[int, float] = field(default_factory=dict)  # stage -> best value of validation.select
    carried: tuple[torch.Tensor, torch.Tensor] | None = None  # (policy STM, reference STM) for random resets
    timings: dict[str, float] = field(default_factory=dict)  # seconds of rollout / reward / update so far
    layout: dict[str, Any] = field(default_factory=dict)  # seed, batch size, (steps, episodes) per stage

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "epoch": self.epoch, "batch": self.batch, "iterations": self.iterations,
                "best": dict(self.best), "carried": self.carried, "timings": dict(self.timings),
                "layout": self.layout}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved position; refused when it was saved under another layout (it would point at
        other batches: a changed batch size, seed, stage length or episode count)."""
        saved = state.get("layout")
        if saved and self.layout and saved != self.layout:
            differ = [f"{key} {saved.get(key)} -> {self.layout.get(key)}" for key in sorted(self.layout)
                      if saved.get(key) != self.layout.get(key)]
            raise ConfigError(f"the checkpoint's curriculum position was saved with another layout ({'; '.join(differ)}"
                              "): set it back to resume, or use a new run_dir")
        self.stage, self.epoch, self.batch = state["stage"], state["epoch"], state["batch"]
        self.iterations, self.best, self.carried = state["iterations"], dict(state["best"]), state["carried"]
        self.timings = dict(state.get("timings", {}))

    def next_epoch(self, epochs_in_stage: int) -> None:
        self.epoch, self.batch = self.epoch + 1, 0
        if self.epoch >= epochs_in_stage:
            self.stage, self.epoch, self.carried = self.stage + 1, 0, None
