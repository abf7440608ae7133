"""Learning-rate schedule: linear warm-up, then cosine decay to a floor.

    m(s) = (s + 1) / W                                              for s < W
    m(s) = r + (1 - r) · ½ · (1 + cos(π · min(1, (s - W) / (T - W))))  otherwise

where W = ``warmup_steps``, T = ``total_steps`` and r = ``min_lr_ratio``. Each parameter group's learning
rate is its own base rate times m(s), so per-group rates keep their ratios throughout. Warm-up protects
Adam's early, badly estimated second moments; the floor keeps late curriculum stages learning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass
class ScheduleConfig:
    LIMITS: ClassVar[dict[str, str]] = {"total_steps": ">= 1"}
    warmup_steps: int = 100  # linear ramp from lr/W to lr
    total_steps: int | None = None  # cosine reaches the floor here; None: the loop's max_steps
    min_lr_ratio: float = 0.1  # floor as a fraction of each group's base rate

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


class WarmupCosine:
    """The multiplier m(s) above; an object (not a lambda) so LambdaLR can save and restore it."""

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig,
                    max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying ``WarmupCosine`` to every group; stepped once per optimizer step."""
    total = config.total_steps if config.total_steps is not None else max_steps
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(config.warmup_steps, total, config.min_lr_ratio))


def set_base_lrs(scheduler: torch.optim.lr_scheduler.LambdaLR, base_lrs: Sequence[float]) -> None:
    """Give each torch group a new base rate and the rate m(s) times it at the schedule's position ``s``.

    A stage's own learning rates (MRL) and a resumed run's changed settings take effect at once, without
    moving the schedule: ``lr_i = base_i · m(s)``.
    """
    for i, (group, base) in enumerate(zip(scheduler.optimizer.param_groups, base_lrs, strict=True)):
        scheduler.base_lrs[i] = group["initial_lr"] = base
        group["lr"] = base * scheduler.lr_lambdas[i](scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
