"""The supervised stages' training loop, and the plain functions every trainer calls.

MRL writes its own loop (:mod:`rxmrl.training.mrl.trainer`: rollout -> advantages -> PPO epochs); what the
two share lives in plain functions, one home each: here the NaN guard (:func:`check_finite`,
:func:`check_weights_finite`), mixed precision (:func:`autocast_dtype`, :func:`autocast`,
:func:`grad_scaler`), the start and end of a run (:func:`start_run`: print, resume, note changes, save the
config; :func:`close_run`) and :func:`to_device`; the optimiser and clipping in :mod:`.optim`; schedules
in :mod:`.schedule`; checkpoints in :mod:`.checkpoint`; DDP and the gradient all-reduce in
:mod:`.distributed`; the metrics writer in :mod:`.metrics`.

A supervised stage supplies a model and a ``step_fn(model, batch) -> (loss, metrics)``; the ``Trainer``
does the rest:

    for each optimizer step s:
        for each of A micro-batches:            # gradient accumulation, A = grad_accum_steps
            loss, metrics = step_fn(model, batch)    # autocast (bf16/fp16) on CUDA only
            stop if loss is not finite on any rank   # before backward: nothing is updated
            backward(loss / A)                   # DDP averages gradients across ranks on the last one
        g ← clip(g, grad_clip); AdamW step; lr ← base_lr · m(s+1); zero grads
        every log_every: metrics (mean over steps and ranks) → metrics.jsonl + TensorBoard
        every eval_every (an argument, 0: never): eval_fn(model) → "eval/*"; a better ``best_metric`` saves ``best``
        every checkpoint_every and at the end: atomic checkpoint, if every weight is finite

Exact resume: a checkpoint restores weights, optimizer moments, schedule position, AMP scaler, every RNG
(per rank), the data position, the metrics logged so far (``metrics.jsonl`` is cut back to the checkpoint,
the open logging window restored) and any stage state (``stateful``), so the losses and records after a
restart equal those of an uninterrupted run. Settings changed since the earlier attempt apply from the
resumed step (learning rates included) and are named in a note; a change that would move the data
position (batch size, examples, seed) or the model's size is refused. ``step_fn`` runs inside the
DDP-wrapped module's ``forward`` (via a small wrapper), so models whose step is more than one ``forward``
call (RxT: encode, update memory, decode) still get DDP's gradient averaging.

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

    trainer = Trainer(model, step_fn, batches, config=cfg.loop, optim=cfg.optim, schedule=cfg.schedule,
                      group_of=prefix_groups({"embedding": ["embedding."], "encoder": ["encoder."],
                                              "memory_attention": ["memory_attention."]}, default="decoder"),
                      trainable_schedule=lambda t: ["decoder"] if t.epoch < 2 else None,  # gradual unfreezing
                      run_dir=run_dir, env=env, run_config=cfg)
    result = trainer.fit()                              # resumes by itself if run_dir has a checkpoint
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from rxmrl.config import changed_keys, format_config, save_config
from rxmrl.model.sampling import NonFiniteProbabilitiesError
from rxmrl.runtime import RunError, RunLock, replace_directory
from rxmrl.training.checkpoint import (CheckpointManager, latest_checkpoint, optimizer_state, resume_training,
                                       save_training_checkpoint)
from rxmrl.training.distributed import (DistEnv, all_reduce_mean, any_rank, barrier, init_distributed,
                                        lock_run_dir, wrap_ddp)
from rxmrl.training.metrics import MetricsLogger
from rxmrl.training.optim import (GroupOf, OptimConfig, build_optimizer, clip_gradients, clip_sets, learning_rates,
                                  set_trainable)
from rxmrl.training.rng import seed_everything
from rxmrl.training.schedule import ScheduleConfig, build_scheduler

StepFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, Mapping[str, Any]]"]
EvalFn = Callable[[nn.Module], Mapping[str, float]]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NonFiniteLossError(RunError):
    """The loss, gradient norm, a reward or the weights became NaN/inf; nothing non-finite was saved."""


def is_non_finite_sampling(error: BaseException) -> bool:
    """Whether ``error`` is the sampler's refusal to sample from NaN/inf probabilities."""
    return isinstance(error, NonFiniteProbabilitiesError)


def check_finite(value: float, what: str, *, step: int, env: DistEnv, optimizer: torch.optim.Optimizer | None = None,
                 checkpoints: CheckpointManager | None = None, diverged: Path | None = None) -> None:
    """The NaN guard: raise :class:`NonFiniteLossError` on every rank if ``value`` is NaN/inf on any.

    ``step`` is the number of optimizer steps done, so the message names step ``step + 1``. Gradients are
    dropped (``optimizer``), so no update happens. ``diverged``: the checkpoint holding exactly the weights
    that gave ``value`` (a loss, a gradient, sampling); a resume from it would meet the same NaN, so it is
    moved aside to ``diverged-step-N`` and the one before is named instead.
    """
    if not any_rank(not math.isfinite(value), env):
        return
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    aside = set_aside_diverged(diverged, env) if diverged is not None and checkpoints is not None else ""
    raise NonFiniteLossError(f"non-finite {what} ({value}) at step {step + 1} on rank {env.rank} or another rank; "
                             f"no update was applied. {aside}{last_finite_checkpoint(checkpoints)}")


def check_weights_finite(model: nn.Module, what: str, *, step: int, env: DistEnv,
                         checkpoints: CheckpointManager | None = None) -> None:
    """Raise :class:`NonFiniteLossError` on every rank if any weight is NaN/inf, before ``what`` is saved.

    A step whose loss and gradients were finite can still blow the weights up (a huge learning rate);
    saving them would make the poisoned step the one a resume starts from.
    """
    poisoned = next((name for name, tensor in model.state_dict().items()
                     if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())), None)
    if any_rank(poisoned is not None, env):
        raise NonFiniteLossError(f"non-finite weights after step {step} ({poisoned or 'on another rank'} holds "
                                 f"NaN/inf); the {what} was not saved. {last_finite_checkpoint(checkpoints)}")


def set_aside_diverged(path: Path, env: DistEnv) -> str:
    """Move the checkpoint of weights that just gave a NaN out of ``latest()``'s sight; says so."""
    aside = path.with_name(f"diverged-{path.name}")
    if env.is_main:
        replace_directory(path, aside)
    barrier(env)
    return f"{path.name} holds the weights that gave it, so it was moved aside to {aside.name}. "


def last_finite_checkpoint(checkpoints: CheckpointManager | None) -> str:
    """Where a resume would start, and how (the one line a diverged run ends with)."""
    if checkpoints is None:
        return "Last finite checkpoint: none (no run directory)"
    last = checkpoints.latest()
    if last is None:
        return (f"Last finite checkpoint: none yet in {checkpoints.directory}; running the same command again "
                "starts from the beginning (lower the learning rate first)")
    return (f"Last finite checkpoint: {last}; running the same command again resumes from it (lower the "
            "learning rate first)")


def autocast_dtype(amp: bool, amp_dtype: str, device: torch.device) -> torch.dtype | None:
    """The dtype a step's forward runs in: ``amp_dtype`` on CUDA with ``amp``, else None (float32)."""
    dtype = getattr(torch, amp_dtype)
    return dtype if amp and device.type == "cuda" else None


def autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA in ``dtype``; nothing for None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type="cuda", dtype=dtype)


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The loss scaler float16 needs (its small exponent underflows gradients); a no-op otherwise."""
    return torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def start_run(run_config: Any, run_dir: Path | None, env: DistEnv, resume: Callable[[], bool]) -> bool:
    """Print ``run_config``, call ``resume()`` (True: resumed from a checkpoint), note which settings changed
    since the earlier attempt (they apply from the resumed step), then save ``config.toml`` -- after the
    resume, so a refused one leaves the earlier attempt's config in place. Returns ``resume()``'s answer."""
    saved = run_dir / "config.toml" if run_dir is not None and run_config is not None else None
    changed = changed_keys(saved, run_config) if saved is not None and env.is_main else []
    if run_config is not None and env.is_main:
        print(format_config(run_config), flush=True)
    resumed = resume()
    if resumed and changed and env.is_main:
        print(f"note: {saved} of the earlier attempt differs in {', '.join(changed)}; the new values apply "
              "from the resumed step", flush=True)
    if saved is not None and env.is_main:
        save_config(run_config, saved)
    return resumed


def close_run(metrics: MetricsLogger, lock: RunLock | None) -> None:
    """The end of a trainer's hold on its run directory: metric files closed, the lock released."""
    metrics.close()
    if lock is not None:
        lock.release()


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


class Trainer:
    """Optimises ``model`` with ``step_fn`` over ``data``; see the module docstring for the loop."""

    def __init__(self, model: nn.Module, step_fn: StepFn, data: Any = None, *,
                 config: LoopConfig | None = None, optim: OptimConfig | None = None,
                 schedule: ScheduleConfig | None = None, group_of: GroupOf | None = None,
                 trainable: Collection[str] | None = None,
                 trainable_schedule: Callable[[Trainer], Collection[str] | None] | None = None,
                 run_dir: str | Path | None = None, env: DistEnv | None = None,
                 stateful: Mapping[str, Stateful] | None = None, eval_fn: EvalFn | None = None,
                 eval_every: int = 0, best_metric: str = "loss", best_mode: Literal["min", "max"] = "min",
                 run_config: Any = None, desc: str = "train") -> None:
        self.config = config or LoopConfig()
        self.env = env or init_distributed()
        self.model = model.to(self.env.device)
        self.step_fn, self.data, self.group_of = step_fn, data, group_of
        self.trainable_schedule, self.eval_fn, self.desc = trainable_schedule, eval_fn, desc
        # every eval_every steps (0: never) eval_fn runs; a better best_metric of its result saves ``best``
        self.eval_every, self.best_metric, self.best_mode = eval_every, best_metric, best_mode
        self.stateful = dict(stateful or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        seed_everything(self.config.seed + self.env.rank)
        self.optimizer = build_optimizer(self.model, optim or OptimConfig(), group_of)
        self.scheduler = build_scheduler(self.optimizer, schedule or ScheduleConfig(), self.config.max_steps)
        self.autocast_dtype = autocast_dtype(self.config.amp, self.config.amp_dtype, self.env.device)
        self.scaler = grad_scaler(self.autocast_dtype)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", self.config.keep_last) \
            if self.run_dir is not None else None
        self._lock = lock_run_dir(self.run_dir, self.env) if self.run_dir is not None else None
        self.metrics = MetricsLogger(self.run_dir, self.env.is_main, self.config.tensorboard)
        try:
            self._start(data, trainable, run_config)
        except BaseException:  # a refused resume: leave the run directory to the next process
            self.close()
            raise

    def _start(self, data: Any, trainable: Collection[str] | None, run_config: Any) -> None:
        """The trainer's state: fresh, or resumed from the run directory (then ``config.toml`` is updated)."""
        self.step, self.best_value = 0, None
        self.last_loss: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.window: dict[str, float] = {}  # metric sums of the steps since the last record
        self.window_steps = 0
        self.last_checkpoint: Path | None = None
        self._last_checkpoint_step: int | None = None
        self.trainable: set[str] = set()
        self._wrapped: nn.Module | None = None
        self.set_trainable(trainable)
        if data is not None and not hasattr(data, "state_dict") and self.checkpoints is not None:
            warnings.warn(f"{type(data).__name__} has no state_dict(): a resumed run restarts its data order "
                          "(use rxmrl.training.data_order.ResumableBatches for exact resume)", stacklevel=3)
        start_run(run_config, self.run_dir, self.env,
                  lambda: self.config.resume and self.checkpoints is not None and self.resume())
        if self.step == 0:  # starting over: records of an attempt that left no checkpoint do not count
            self.metrics.rewind(0, 0)

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
        show = self.config.progress and self.env.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.config.max_steps, initial=self.step, desc=self.desc, disable=not show,
                   dynamic_ncols=True)
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
                every = self.config.checkpoint_every
                if improved or (every and self.step % every == 0):
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
        self.scaler.unscale_(self.optimizer)
        norms = clip_gradients(self._clip_sets, self.config.grad_clip)
        grad_norm = norms.pop("grad_norm")
        if not self.scaler.is_enabled():  # with fp16 the scaler skips such steps itself
            self.check_finite(grad_norm, "gradient norm")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.last_loss = totals["loss"]
        totals["grad_norm"] = grad_norm
        totals.update(norms)
        return totals

    def check_finite(self, value: float, what: str, weights_at_fault: bool = True) -> None:
        """:func:`check_finite` at this step; ``weights_at_fault``: the current weights produced ``value``."""
        check_finite(value, what, step=self.step, env=self.env, optimizer=self.optimizer,
                     checkpoints=self.checkpoints, diverged=self._checkpoint_of_these_weights(weights_at_fault))

    def _checkpoint_of_these_weights(self, weights_at_fault: bool) -> Path | None:
        """The checkpoint holding exactly the current weights, when they are to blame."""
        return self.last_checkpoint if weights_at_fault and self._last_checkpoint_step == self.step else None

    def check_weights_finite(self, what: str = "checkpoint") -> None:
        check_weights_finite(self.model, what, step=self.step, env=self.env, checkpoints=self.checkpoints)

    def _log_window(self, sums: dict[str, float], steps: int, seconds: float) -> dict[str, float]:
        """Record the mean of each metric over the window's steps and all ranks, plus rates and speed."""
        record = all_reduce_mean({k: v / steps for k, v in sums.items()}, self.env)
        record.update(learning_rates(self.optimizer))
        record.update(steps_per_second=steps / max(seconds, 1e-9), epoch=self.epoch)
        self.metrics.log(self.step, record)
        self.last_metrics = record
        return record

    def _maybe_evaluate(self) -> bool:
        """Run ``eval_fn`` when due; True if its ``best_metric`` improved (so ``best`` is saved)."""
        every = self.eval_every
        if self.eval_fn is None or not every or self.step % every:
            return False
        self.model.eval()
        with torch.no_grad():
            values = all_reduce_mean(dict(self.eval_fn(self.model)), self.env)
        self.metrics.log(self.step, {f"eval/{k}": v for k, v in values.items()})
        value = values[self.best_metric]
        better = self.best_value is None or (
            value < self.best_value if self.best_mode == "min" else value > self.best_value)
        if better:
            self.best_value = value
        return better and self.checkpoints is not None

    # ------------------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Atomic checkpoint of everything resume needs; every rank must call it (RNG is gathered).

        Refuses (``NonFiniteLossError``) when a weight is not finite, so the last checkpoint stays a good one.
        """
        self.check_weights_finite()
        state = {
            "step": self.step, **optimizer_state(self.optimizer, self.scheduler, self.scaler),
            "best_value": self.best_value, "trainable": sorted(self.trainable), "world_size": self.env.world_size,
            "data": self.data.state_dict() if hasattr(self.data, "state_dict") else None,
            "extra": {name: obj.state_dict() for name, obj in self.stateful.items()},
            "metrics_position": self.metrics.position(), "window": dict(self.window),
            "window_steps": self.window_steps, "last_loss": self.last_loss, "last_metrics": self.last_metrics,
        } if self.env.is_main else {}
        self.last_checkpoint = save_training_checkpoint(self.checkpoints, self.model, state, self.step, self.env,
                                                        best=best)
        self._last_checkpoint_step = self.step
        return self.last_checkpoint

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore from ``path`` or the latest complete checkpoint; False when there is none."""
        path = path if path is not None else latest_checkpoint(self.checkpoints, self.env)
        if path is None:
            return False
        state = resume_training(path, self.model, self.optimizer, self.scheduler, self.scaler, self.env)
        self.set_trainable(state["trainable"])
        if state["data"] is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state["data"])
        for name, obj in self.stateful.items():
            obj.load_state_dict(state["extra"][name])
        self.step, self.best_value = state["step"], state["best_value"]
        self.last_checkpoint, self._last_checkpoint_step = Path(path), self.step
        self.metrics.rewind(state.get("metrics_position"), self.step)
        self.window, self.window_steps = dict(state.get("window", {})), state.get("window_steps", 0)
        self.last_loss, self.last_metrics = state.get("last_loss"), dict(state.get("last_metrics", {}))
        if self.env.is_main:
            print(f"resumed from {path} at step {self.step}", flush=True)
        return True

    def close(self) -> None:
        """Close the metric files and release the run directory (also on errors, as a context manager)."""
        close_run(self.metrics, self._lock)
        self._lock = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a (nested) batch on ``device``; other values as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
