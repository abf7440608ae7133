"""The supervised stages' training loop.

MRL writes its own loop (:mod:`rxmrl.training.mrl.trainer`: rollout -> advantages -> PPO epochs); both stand
on one run harness (:class:`rxmrl.training.harness.RunHarness`: run directory, lock, metrics, checkpoints,
resume, NaN guard, mixed precision, the optimiser step, progress); the optimiser and clipping live in
:mod:`.optim`, schedules in :mod:`.schedule`, DDP in :mod:`.distributed`.

A supervised stage supplies a model and a ``step_fn(model, batch) -> (loss, metrics)``; the ``Trainer``
does the rest:

    for each optimizer step s:
        for each of A micro-batches:            # gradient accumulation, A = grad_accum_steps
            loss, metrics = step_fn(model, batch)    # autocast (bf16/fp16) on CUDA only
            stop if loss is not finite on any rank   # before backward: nothing is updated
            backward(loss / A)                   # DDP averages gradients across ranks on the last one
        g ← clip(g, grad_clip); AdamW step; lr ← base_lr · m(s+1); zero grads
        every log_every: metrics (mean over steps and ranks) → metrics.jsonl + TensorBoard
        every evaluation.every (if given): evaluation.fn(model) → "eval/*"; a lower ``loss`` saves ``best``
        every checkpoint_every and at the end: atomic checkpoint, if every weight is finite

Exact resume: a checkpoint restores weights, optimizer moments, schedule position, AMP scaler, every RNG
(per rank), the data position, the metrics logged so far (``metrics.jsonl`` is cut back to the checkpoint,
the open logging window restored), so the losses and records after a restart equal those of an
uninterrupted run. Settings changed since the earlier attempt apply from the resumed step (learning rates
included) and are named in a note; a change that would move the data position (batch size, examples, seed)
or the model's size is refused. ``step_fn`` runs inside the DDP-wrapped module's ``forward`` (via a small
wrapper), so models whose step is more than one ``forward`` call (RxT: encode, update memory, decode) still
get DDP's gradient averaging.

The run directory belongs to one process: the trainer holds its lock (:class:`rxmrl.runtime.RunLock`)
from construction to ``close()``.

How a stage uses it::

    seed_everything(cfg.loop.seed)                      # before building the model: same init on every run
    model = ReactiveTransformer(cfg.model)
    env = init_distributed()                            # torchrun's variables, or one CPU/GPU process
    batches = ResumableBatches(dataset, BatchOrder(len(dataset), cfg.batch_size, seed=cfg.loop.seed,
                                                   rank=env.rank, world_size=env.world_size), collate)

    def step_fn(model, batch):                          # runs under autocast on CUDA
        out = model(batch["input_ids"], ...)
        loss = out.ar_loss + cfg.moe_aux_weight * out.aux_loss
        return loss, {"ar_loss": out.ar_loss.detach(), "aux_loss": out.aux_loss.detach()}

    trainer = Trainer(model, step_fn, batches, settings=cfg,  # cfg.loop, cfg.optim, cfg.schedule
                      group_of=prefix_groups({"embedding": ["embedding."], "encoder": ["encoder."],
                                              "memory_attention": ["memory_attention."]}, default="decoder"),
                      trainable_schedule=lambda t: ["decoder"] if t.epoch < 2 else None,  # gradual unfreezing
                      env=env, run=RunRecord(run_dir, config=cfg))
    result = trainer.fit()                              # resumes by itself if run_dir has a checkpoint
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from rxmrl.training.distributed import DistEnv, all_reduce_mean, init_distributed, wrap_ddp
from rxmrl.training.harness import RunHarness, autocast, autocast_dtype, grad_scaler, to_device
from rxmrl.training.optim import GroupOf, OptimConfig, build_optimizer, clip_sets, learning_rates, set_trainable
from rxmrl.training.rng import seed_everything
from rxmrl.training.schedule import ScheduleConfig, build_scheduler

StepFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, Any]]"]
EvalFn = Callable[[nn.Module], Mapping[str, float]]


@dataclass
class LoopConfig:
    MOVED: ClassVar[dict[str, str]] = {
        key: "only stage 4 evaluates during training: stage4.probe_every" for key in
        ("eval_every", "best_metric", "best_mode")}
    LIMITS: ClassVar[dict[str, str]] = {"grad_clip": "> 0", "checkpoint_every": ">= 0", "keep_last": ">= 1",
                                        "seed": ">= 0"}

    max_steps: int = 1000  # optimizer steps in total (a resumed run continues up to this)
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float | None = 1.0  # max global L2 norm of the gradients; None: no clipping
    # groups clipped on their own (each to ``grad_clip``), e.g. MRL's ``critic``: one global norm would let
    # the value loss's large gradient shrink the policy's step (measured: critic norm ~15 vs policy < 1)
    clip_apart: tuple[str, ...] = ()
    log_every: int = 10  # steps between metric records
    checkpoint_every: int = 0  # steps between checkpoints; 0: only at the end
    keep_last: int = 3  # step checkpoints kept (``best`` is kept besides)
    seed: int = 0  # seeds python/numpy/torch (plus the rank) when the trainer starts
    resume: bool = True  # continue from the latest complete checkpoint in the run directory
    amp: bool = True  # autocast on CUDA (ignored on CPU)
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # float16 adds a gradient scaler
    progress: bool = True  # tqdm bar (only on rank 0 and a terminal)
    tensorboard: bool = True
    find_unused_parameters: bool = True  # DDP: MoE experts may go unused on a rank

    def __post_init__(self) -> None:
        for name in ("max_steps", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TrainerSettings:
    """The three config sections a ``Trainer`` runs by: its loop (steps, cadence, resume), the optimiser and
    the learning-rate schedule. A supervised stage's config extends it with its batch size
    (:class:`rxmrl.training.stages.common.StageLoop`), so a stage hands over its own config as it is."""

    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass(frozen=True)
class Evaluation:
    """``fn(model)`` every ``every`` steps, without gradients, logged as ``eval/*``. Its lowest ``loss`` so far
    saves the ``best`` checkpoint: the one evaluation in training is stage 4's memory probe, whose ``loss`` is
    the answer loss with memory, and lower is better."""

    fn: EvalFn
    every: int

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"Evaluation.every must be >= 1 step, got {self.every} (no evaluation: pass None)")


@dataclass(frozen=True)
class RunRecord:
    """Where a run is recorded and under what name: the run directory (None: nothing is saved; the lock,
    metrics and checkpoints live there), the full config, printed at the start and saved as ``config.toml``
    beside the checkpoints (None: neither), and the progress bar's label."""

    directory: str | Path | None = None
    config: Any = None
    desc: str = "train"


@dataclass
class TrainResult:
    step: int  # optimizer steps completed in total
    losses: list[float] = field(default_factory=list)  # this call's per-step losses (this rank)
    last_metrics: dict[str, float] = field(default_factory=dict)  # last logged record (also after a resume)
    checkpoint: Path | None = None  # the final checkpoint, if a run directory was given
    final_loss: float | None = None  # loss of the last step (also when a resumed call had no step left)


class _StepModule(nn.Module):
    """Runs ``step_fn`` as ``forward`` so DDP sees the whole step (see the module docstring)."""

    def __init__(self, model: nn.Module, step_fn: StepFn) -> None:
        super().__init__()
        self.model, self.step_fn = model, step_fn

    def forward(self, batch: Any) -> Any:
        return self.step_fn(self.model, batch)


class Trainer(RunHarness):
    """Optimises ``model`` with ``step_fn`` over ``data``; see the module docstring for the loop."""

    def __init__(self, model: nn.Module, step_fn: StepFn, data: Any = None, *,
                 settings: TrainerSettings | None = None, group_of: GroupOf | None = None,
                 trainable: Collection[str] | None = None,
                 trainable_schedule: Callable[[Trainer], Collection[str] | None] | None = None,
                 env: DistEnv | None = None, evaluation: Evaluation | None = None,
                 run: RunRecord | None = None) -> None:
        settings, run = settings or TrainerSettings(), run or RunRecord()
        self.config = settings.loop
        self.env = env or init_distributed()
        self.model = model.to(self.env.device)
        self.step_fn, self.data, self.group_of = step_fn, data, group_of
        self.trainable_schedule, self.evaluation, self.desc = trainable_schedule, evaluation, run.desc
        seed_everything(self.config.seed + self.env.rank)
        self.optimizer = build_optimizer(self.model, settings.optim, group_of)
        self.scheduler = build_scheduler(self.optimizer, settings.schedule, self.config.max_steps)
        self.autocast_dtype = autocast_dtype(self.config.amp, self.config.amp_dtype, self.env.device)
        self.scaler = grad_scaler(self.autocast_dtype)
        self.open_run(run.directory, self.config)
        with self.releasing_on_error():  # a refused resume: leave the run directory to the next process
            self._start(data, trainable, run.config)

    def _start(self, data: Any, trainable: Collection[str] | None, run_config: Any) -> None:
        """The trainer's state: fresh, or resumed from the run directory (then ``config.toml`` is updated)."""
        self.best_value = None
        self.last_loss: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.window: dict[str, float] = {}  # metric sums of the steps since the last record
        self.window_steps = 0
        self.trainable: set[str] = set()
        self._wrapped: nn.Module | None = None
        self.set_trainable(trainable)
        if data is not None and not hasattr(data, "state_dict") and self.checkpoints is not None:
            warnings.warn(f"{type(data).__name__} has no state_dict(): a resumed run restarts its data order "
                          "(use rxmrl.training.data_order.ResumableBatches for exact resume)", stacklevel=3)
        self.start_run(run_config, self.config.resume)

    # ------------------------------------------------------------------------------ freezing
    def set_trainable(self, groups: Collection[str] | None) -> None:
        """Train only these named groups (None: all); frozen ones stay bit-identical. Rebuilds DDP."""
        chosen = set_trainable(self.model, groups, self.group_of)
        self._clip_sets = clip_sets(self.model, self.group_of, self.config.clip_apart)
        if chosen != self.trainable or self._wrapped is None:
            self.trainable = chosen
            self._wrapped = wrap_ddp(_StepModule(self.model, self.step_fn), self.env,
                                     self.config.find_unused_parameters)

    @property
    def epoch(self) -> int:
        return int(getattr(self.data, "epoch", 0))

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train until ``max_steps``; checkpoints at the end. Raises ``NonFiniteLossError`` on NaN/inf."""
        result = TrainResult(step=self.step)
        bar = self.progress(self.config.max_steps, self.step, self.desc)
        window_start = time.perf_counter()
        try:
            while self.step < self.config.max_steps:
                if self.trainable_schedule is not None:
                    self.set_trainable(self.trainable_schedule(self))
                step_metrics = self.train_step()
                result.losses.append(step_metrics["loss"])
                for key, value in step_metrics.items():
                    self.window[key] = self.window.get(key, 0.0) + value
                self.window_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{step_metrics['loss']:.4f}", refresh=False)
                if self.step % self.config.log_every == 0 or self.step == self.config.max_steps:
                    self._log_window(self.window, self.window_steps, time.perf_counter() - window_start)
                    self.window, self.window_steps, window_start = {}, 0, time.perf_counter()
                improved = self._maybe_evaluate()
                if improved or self.checkpoint_due(self.step, self.config.checkpoint_every):
                    self.save_checkpoint(best=improved)
            if self.checkpoints is not None and self._last_checkpoint_step != self.step:
                self.save_checkpoint()
        finally:
            bar.close()
        result.step, result.checkpoint = self.step, self.last_checkpoint
        result.last_metrics, result.final_loss = self.last_metrics, self.last_loss
        return result

    def train_step(self) -> dict[str, float]:
        """One optimizer step over ``grad_accum_steps`` micro-batches of ``data``; returns their mean metrics."""
        assert self._wrapped is not None
        self.model.train()
        micro_batches = [next(self.data) if self.data is not None else None
                         for _ in range(self.config.grad_accum_steps)]
        accum = len(micro_batches)
        totals: dict[str, float] = {}
        for micro, batch in enumerate(micro_batches):
            batch = to_device(batch, self.env.device)
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or not self.env.distributed else self._wrapped.no_sync()
            with sync:
                with autocast(self.autocast_dtype):
                    loss, metrics = self._wrapped(batch)
                self.check_finite(float(loss.detach()), f"loss (micro-batch {micro})")
                self.scaler.scale(loss / accum).backward()
            for key, value in {"loss": loss, **dict(metrics)}.items():
                totals[key] = totals.get(key, 0.0) + float(torch.as_tensor(value).detach()) / accum
        norms = self.apply_gradients(self._clip_sets, self.config.grad_clip)
        self.last_loss = totals["loss"]
        totals["grad_norm"] = norms.pop("grad_norm")
        totals.update(norms)
        return totals

    def _log_window(self, sums: dict[str, float], steps: int, seconds: float) -> dict[str, float]:
        """Record the mean of each metric over the window's steps and all ranks, plus rates and speed."""
        record = all_reduce_mean({k: v / steps for k, v in sums.items()}, self.env)
        record.update(learning_rates(self.optimizer))
        record.update(steps_per_second=steps / max(seconds, 1e-9), epoch=self.epoch)
        self.metrics.log(self.step, record)
        self.last_metrics = record
        return record

    def _maybe_evaluate(self) -> bool:
        """Run the evaluation when due; True if its ``loss`` is the lowest so far (so ``best`` is saved)."""
        if self.evaluation is None or self.step % self.evaluation.every:
            return False
        self.model.eval()
        with torch.no_grad():
            values = all_reduce_mean(dict(self.evaluation.fn(self.model)), self.env)
        self.metrics.log(self.step, {f"eval/{k}": v for k, v in values.items()})
        value = values["loss"]
        better = self.best_value is None or value < self.best_value
        if better:
            self.best_value = value
        return better and self.checkpoints is not None

    # ------------------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """The loop's own part of a checkpoint: best value, trainable groups, data position and the open
        logging window."""
        return {"best_value": self.best_value, "trainable": sorted(self.trainable),
                "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None,
                "window": dict(self.window), "window_steps": self.window_steps, "last_loss": self.last_loss,
                "last_metrics": self.last_metrics}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.set_trainable(state["trainable"])
        if state["data"] is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        self.best_value = state["best_value"]
        self.window, self.window_steps = dict(state.get("window", {})), state.get("window_steps", 0)
        self.last_loss, self.last_metrics = state.get("last_loss"), dict(state.get("last_metrics", {}))

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
