"""The run harness both trainers stand on: one home for what a training run does besides learning.

A trainer (the supervised :class:`rxmrl.training.loop.Trainer`, :class:`rxmrl.training.mrl.MrlTrainer`)
subclasses :class:`RunHarness` and writes its own loop; the harness holds, for its run directory:

* the directory's lock (one process at a time), ``metrics.jsonl`` + TensorBoard, the checkpoints;
* the start of a run (:meth:`RunHarness.start_run`: print the config, resume from the latest checkpoint,
  note the settings changed since, save ``config.toml``) and its end (:meth:`RunHarness.close`);
* the checkpoint cadence, :meth:`RunHarness.save_checkpoint` (atomic, refused for non-finite weights) and
  :meth:`RunHarness.resume` (weights, optimiser, schedule, scaler, every RNG, metrics cut back) -- the trainer
  adds its own state through :meth:`RunHarness.checkpoint_state` / :meth:`RunHarness.load_checkpoint_state`;
* the NaN guard (:meth:`RunHarness.check_finite`, :meth:`RunHarness.check_weights_finite`);
* the optimiser step after backward (:meth:`RunHarness.apply_gradients`: unscale, clip, guard, step, schedule);
* mixed precision (:func:`autocast_dtype`, :func:`autocast`, :func:`grad_scaler`) and the progress bar.

So a killed run of either trainer resumes to the weights an uninterrupted run ends with, bit for bit, by the
same code.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from rxmrl.config import changed_keys, format_config, save_config
from rxmrl.model.sampling import NonFiniteProbabilitiesError
from rxmrl.runtime import RunError, RunLock, replace_directory
from rxmrl.training.checkpoint import (CheckpointManager, latest_checkpoint, optimizer_state, resume_training,
                                       save_training_checkpoint)
from rxmrl.training.distributed import DistEnv, any_rank, barrier, lock_run_dir
from rxmrl.training.metrics import MetricsLogger
from rxmrl.training.optim import clip_gradients


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


class RunSettings(Protocol):
    """The run settings the harness reads (``LoopConfig`` and ``MrlRunConfig`` both have them)."""

    keep_last: int
    tensorboard: bool
    progress: bool


class RunHarness:
    """Run directory, lock, metrics, checkpoints, resume, NaN guard and optimiser step of one trainer.

    The subclass sets ``model``, ``env``, ``optimizer``, ``scheduler`` and ``scaler`` before
    :meth:`start_run`, and says what its checkpoints add (:meth:`checkpoint_state`,
    :meth:`load_checkpoint_state`)."""

    model: nn.Module
    env: DistEnv
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler

    def open_run(self, run_dir: str | Path | None, settings: RunSettings) -> None:
        """Take ``run_dir`` (None: no directory, nothing saved): its lock, metric files and checkpoints."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.settings = settings
        self.step = 0  # optimizer steps so far
        self.checkpoints = (CheckpointManager(self.run_dir / "checkpoints", settings.keep_last)
                            if self.run_dir is not None else None)
        self.last_checkpoint: Path | None = None
        self._last_checkpoint_step: int | None = None
        self._lock = lock_run_dir(self.run_dir, self.env) if self.run_dir is not None else None
        self.metrics = MetricsLogger(self.run_dir, self.env.is_main, settings.tensorboard)

    @contextlib.contextmanager
    def releasing_on_error(self) -> Iterator[None]:
        """A trainer's setup after :meth:`open_run`: on any error (a refused resume) the run directory is
        left to the next process."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def start_run(self, run_config: Any, resume: bool = True) -> bool:
        """:func:`start_run` with this trainer's :meth:`resume` (when ``resume`` and there is a directory);
        starting over, the records of an attempt that left no checkpoint are dropped."""
        resumed = start_run(run_config, self.run_dir, self.env,
                            lambda: resume and self.checkpoints is not None and self.resume())
        if self.step == 0:
            self.metrics.rewind(0, 0)
        return resumed

    def progress(self, total: int, initial: int, desc: str) -> tqdm:
        """A tqdm bar on rank 0 in a terminal (``settings.progress``), silent elsewhere."""
        show = self.settings.progress and self.env.is_main and sys.stderr.isatty()
        return tqdm(total=total, initial=initial, desc=desc, disable=not show, dynamic_ncols=True)

    # ---------------------------------------------------------------------------- the NaN guard
    def check_finite(self, value: float, what: str, weights_at_fault: bool = True) -> None:
        """:func:`check_finite` at this step; ``weights_at_fault``: the current weights produced ``value``
        (a checkpoint of exactly them is moved aside)."""
        diverged = self.last_checkpoint if weights_at_fault and self._last_checkpoint_step == self.step else None
        check_finite(value, what, step=self.step, env=self.env, optimizer=self.optimizer,
                     checkpoints=self.checkpoints, diverged=diverged)

    def check_weights_finite(self, what: str = "checkpoint") -> None:
        check_weights_finite(self.model, what, step=self.step, env=self.env, checkpoints=self.checkpoints)

    def apply_gradients(self, clip_sets: Mapping[str, list[nn.Parameter]], grad_clip: float | None) -> dict[str, float]:
        """After backward: unscale, clip each set apart, guard the norm, AdamW, scaler and schedule step; one
        more optimizer step. Returns the gradient norms (``grad_norm`` and one per set clipped apart)."""
        self.scaler.unscale_(self.optimizer)
        norms = clip_gradients(clip_sets, grad_clip)
        if not self.scaler.is_enabled():  # with float16 the scaler skips such steps itself
            self.check_finite(norms["grad_norm"], "gradient norm")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return norms

    # ---------------------------------------------------------------------------- checkpoints
    @staticmethod
    def checkpoint_due(count: int, every: int) -> bool:
        """Whether ``count`` (steps or iterations) is on the cadence ``every`` (0: never)."""
        return bool(every) and count % every == 0

    def checkpoint_state(self) -> dict[str, Any]:
        """What this trainer adds to a checkpoint besides step, optimiser, schedule, scaler, RNG and metrics."""
        return {}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Take back :meth:`checkpoint_state` (called by :meth:`resume` before it says it resumed)."""

    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Atomic checkpoint of everything resume needs; every rank calls it (RNG is gathered). Refused
        (``NonFiniteLossError``) when a weight is not finite, so the last checkpoint stays a good one."""
        self.check_weights_finite()
        state = {"step": self.step, **optimizer_state(self.optimizer, self.scheduler, self.scaler),
                 "world_size": self.env.world_size, **self.checkpoint_state(),
                 "metrics_position": self.metrics.position()} if self.env.is_main else {}
        self.last_checkpoint = save_training_checkpoint(self.checkpoints, self.model, state, self.step, self.env,
                                                        best=best)
        self._last_checkpoint_step = self.step
        return self.last_checkpoint

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore from ``path`` or the latest complete checkpoint (False: there is none): weights, optimiser,
        schedule position, scaler, RNG, the trainer's own state; ``metrics.jsonl`` cut back to it."""
        path = path if path is not None else latest_checkpoint(self.checkpoints, self.env)
        if path is None:
            return False
        state = resume_training(path, self.model, self.optimizer, self.scheduler, self.scaler, self.env)
        self.load_checkpoint_state(state)
        self.step = state["step"]
        self.last_checkpoint, self._last_checkpoint_step = Path(path), self.step
        self.metrics.rewind(state.get("metrics_position"), self.step)
        if self.env.is_main:  # after the trainer's own state: a refused resume never says it resumed
            print(f"resumed from {path} at step {self.step}", flush=True)
        return True

    def close(self) -> None:
        """Close the metric files and release the run directory."""
        self.metrics.close()
        if self._lock is not None:
            self._lock.release()
        self._lock = None


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a (nested) batch on ``device``; other values as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
