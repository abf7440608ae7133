"""What every supervised stage shares: named parameter groups, the data order and the ``Trainer``.

Parameter groups come from :meth:`ReactiveTransformer.parameter_groups` (``embedding``, ``decoder``,
``memory_cross_attention``, ``encoder``, ``memory_attention``, and ``stm`` when the STM init is learned),
so each has its own learning rate (``optim.group_lr``) and can be frozen by name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from rxmrl.model import ReactiveTransformer
from rxmrl.training.data_order import BatchOrder, ResumableBatches
from rxmrl.training.distributed import DistEnv
from rxmrl.training.loop import Evaluation, LoopConfig, RunRecord, StepFn, Trainer, TrainerSettings
from rxmrl.training.optim import GroupOf, OptimConfig
from rxmrl.training.schedule import ScheduleConfig


@dataclass
class StageLoop(TrainerSettings):
    """Loop, optimizer and schedule settings of one stage with a stage's defaults, and its batch size (each
    stage config extends it, so the stage's config is the ``Trainer``'s settings as it is)."""

    loop: LoopConfig = field(default_factory=lambda: LoopConfig(max_steps=200, log_every=10))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=20))
    batch_size: int = 16  # per process; the global batch is batch_size x world size

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def model_group_of(model: ReactiveTransformer) -> GroupOf:
    """``parameter name -> group`` from the model's own parameter groups (shared weights counted once)."""
    group_by_id = {id(p): group for group, params in model.parameter_groups().items() for p in params}
    group_by_name = {name: group_by_id[id(p)] for name, p in model.named_parameters()}

    def group_of(name: str) -> str:
        if name not in group_by_name:
            raise KeyError(f"parameter {name!r} is not in the model's parameter groups")
        return group_by_name[name]
    return group_of


def model_groups(model: ReactiveTransformer) -> list[str]:
    """The groups that hold at least one parameter (``stm`` is empty unless the STM init is learned)."""
    return [group for group, params in model.parameter_groups().items() if params]


def resumable_batches(rows: Sequence[Any], batch_size: int, collate: Callable[[list[Any]], Any], seed: int,
                      env: DistEnv) -> ResumableBatches:
    """Seeded, rank-sharded, resumable batches of ``rows``."""
    order = BatchOrder(len(rows), batch_size, seed=seed, rank=env.rank, world_size=env.world_size)
    return ResumableBatches(rows, order, collate)


def make_trainer(model: ReactiveTransformer, step_fn: StepFn, rows: Sequence[Any],
                 collate: Callable[[list[Any]], Any], settings: StageLoop, env: DistEnv, run: RunRecord, *,
                 trainable: Collection[str] | None = None,
                 trainable_schedule: Callable[[Trainer], Collection[str] | None] | None = None,
                 evaluation: Evaluation | None = None) -> Trainer:
    """The shared ``Trainer`` over a stage's rows, in ``settings.batch_size`` batches, with the model's named
    parameter groups (an ``evaluation``'s lowest ``loss`` keeps ``best``)."""
    batches = resumable_batches(rows, settings.batch_size, collate, settings.loop.seed, env)
    return Trainer(model, step_fn, batches, settings=settings, group_of=model_group_of(model),
                   trainable=trainable, trainable_schedule=trainable_schedule, env=env, evaluation=evaluation,
                   run=run)


def unwrap_model(model: nn.Module) -> ReactiveTransformer:
    """The ReactiveTransformer inside a step (the Trainer passes the bare model to ``step_fn``)."""
    if not isinstance(model, ReactiveTransformer):
        raise TypeError(f"expected a ReactiveTransformer, got {type(model).__name__}")
    return model
