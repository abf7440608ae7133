"""A resumable, seeded, rank-sharded order of batches over a map-style data set.

Epoch ``e`` visits the examples in the permutation drawn from ``torch.Generator().manual_seed(seed + e)``.
Consecutive slices of ``batch_size · world_size`` indices form a *global* batch; rank ``r`` takes its
``r``-th ``batch_size`` slice, so one process with batch 2B and two ranks with batch B see the same global
batches. The position is ``(epoch, batch_in_epoch)``; saving it with a checkpoint and loading it into a
fresh ``BatchOrder`` continues with exactly the batches an uninterrupted run would have drawn. The final
partial global batch of an epoch is dropped so every rank takes the same number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class BatchOrder:
    """Infinite iterator of index lists, moving to the next epoch (a new permutation) when one ends."""

    def __init__(self, num_examples: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True) -> None:
        global_batch = batch_size * world_size
        if num_examples < global_batch:
            raise ValueError(f"{num_examples} examples cannot fill one global batch of {batch_size} x "
                             f"{world_size} ranks = {global_batch}")
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.batches_per_epoch = num_examples // global_batch
        self.epoch = 0
        self.position = 0  # global batches already taken in this epoch
        self._order: list[int] | None = None

    def __iter__(self) -> BatchOrder:
        return self

    def __next__(self) -> list[int]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        order = self._epoch_order()
        start = (self.position * self.world_size + self.rank) * self.batch_size
        self.position += 1
        return order[start:start + self.batch_size]

    def _epoch_order(self) -> list[int]:
        if self._order is None:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + self.epoch)
                self._order = torch.randperm(self.num_examples, generator=generator).tolist()
            else:
                self._order = list(range(self.num_examples))
        return self._order

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed,
                "num_examples": self.num_examples, "global_batch": self.batch_size * self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at a saved position; refused (``ConfigError``) when the position would mean other
        batches: another number of examples, seed or global batch size."""
        from rxmrl.config import ConfigError

        saved = (state["num_examples"], state["seed"], state.get("global_batch"))
        here = (self.num_examples, self.seed, self.batch_size * self.world_size)
        if saved[:2] != here[:2] or saved[2] not in (None, here[2]):
            raise ConfigError(f"the checkpoint's data position is for {saved[0]} examples, seed {saved[1]} and "
                              f"a global batch of {saved[2]}; this run has {here[0]}, {here[1]} and {here[2]} "
                              "(batch_size x ranks): set them back to resume, or use a new run_dir")
        self.epoch, self.position, self._order = state["epoch"], state["position"], None


class ResumableBatches:
    """Collated batches from ``dataset`` in ``BatchOrder``: ``collate([dataset[i] for i in indices])``."""

    def __init__(self, dataset: Sequence[Any], order: BatchOrder,
                 collate: Callable[[list[Any]], Any] | None = None) -> None:
        self.dataset, self.order = dataset, order
        self.collate = collate or _default_collate

    def __iter__(self) -> ResumableBatches:
        return self

    def __next__(self) -> Any:
        return self.collate([self.dataset[i] for i in next(self.order)])

    @property
    def epoch(self) -> int:
        return self.order.epoch

    def state_dict(self) -> dict[str, int]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.order.load_state_dict(state)


def _default_collate(items: list[Any]) -> Any:
    from torch.utils.data import default_collate

    return default_collate(items)
