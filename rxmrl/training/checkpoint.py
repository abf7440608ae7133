"""Atomic checkpoints: a crash mid-write never damages the checkpoints already on disk.

Layout of ``<run_dir>/checkpoints``::

    step-00000100/   model.safetensors   weights (safetensors: no pickle, tied weights handled)
                     state.pt            optimizer, scheduler, grad scaler, RNG per rank, data position,
                                         step, any extra state (e.g. curriculum stage)
                     meta.json           step and file list
    step-00000200/
    best/            the checkpoint with the best evaluation metric so far

Each checkpoint is written as one folder with :func:`rxmrl.runtime.atomic_directory`: into a unique
temporary folder, fsynced, then renamed into place; re-saving a step that exists swaps the two folders
in one atomic step. A killed write leaves only a temporary, which ``latest()`` ignores and the next save
removes (once its writer is dead). The last ``keep_last`` step checkpoints are kept; ``best`` is never
pruned. The weights are checked by the trainers before they save (nothing non-finite reaches the disk).

Both trainers (the supervised ``Trainer`` and ``MrlTrainer``) save and restore through the same functions:
:func:`save_training_checkpoint` (every rank's RNG, rank 0 writes), :func:`latest_checkpoint`,
:func:`optimizer_state` / :func:`restore_optimizer` (moments and schedule position from the checkpoint,
hyperparameters from the run that resumes) and :func:`restore_rng`, together :func:`resume_training`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_model
from torch import nn

from rxmrl.config import ConfigError
from rxmrl.model.weights import save_weights
from rxmrl.runtime import atomic_directory, recover, remove_stale
from rxmrl.training.distributed import DistEnv, barrier, broadcast_object, gather_objects
from rxmrl.training.rng import get_rng_state, set_rng_state
from rxmrl.training.schedule import set_base_lrs

_STEP_DIR = re.compile(r"step-(\d+)")
MODEL_FILE, STATE_FILE, META_FILE = "model.safetensors", "state.pt", "meta.json"


class CheckpointManager:
    """Save, prune and find checkpoints in one directory (call ``save`` on the writing rank only)."""

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def save(self, model: nn.Module, state: dict[str, Any], step: int, best: bool = False) -> Path:
        """Write ``best`` (when asked), then ``step-N``, each atomically; prune old ones.

        ``best`` goes first because ``step-N`` is what a resume starts from: a kill between the two then
        resumes before this step and writes both again, where the other order would resume after it with a
        stale ``best``.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale(self.directory)
        if best:
            self._write(model, state, step, "best")
        final = self._write(model, state, step, f"step-{step:08d}")
        self._prune()
        return final

    def latest(self) -> Path | None:
        """The complete step checkpoint with the highest step, or None."""
        steps = self.complete_steps()
        return self.directory / f"step-{steps[-1]:08d}" if steps else None

    def best(self) -> Path | None:
        path = self.directory / "best"
        recover(path)
        return path if _is_complete(path) else None

    def complete_steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        remove_stale(self.directory)  # puts back a step a killed writer had moved aside
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _STEP_DIR.fullmatch(p.name))]
        return sorted(step for step, path in found if _is_complete(path))

    def _write(self, model: nn.Module, state: dict[str, Any], step: int, name: str) -> Path:
        final = self.directory / name
        with atomic_directory(final) as temporary:
            save_weights(model, temporary / MODEL_FILE)
            torch.save(state, temporary / STATE_FILE)
            (temporary / META_FILE).write_text(json.dumps({"step": step, "files": [MODEL_FILE, STATE_FILE]}))
        return final

    def _prune(self) -> None:
        for step in self.complete_steps()[:-self.keep_last]:
            shutil.rmtree(self.directory / f"step-{step:08d}", ignore_errors=True)


# ------------------------------------------------------------------ what both trainers save and restore


def save_training_checkpoint(checkpoints: CheckpointManager | None, model: nn.Module, state: dict[str, Any],
                             step: int, env: DistEnv, best: bool = False) -> Path | None:
    """Write ``state`` (plus every rank's RNG, under ``rng``) as checkpoint ``step-N``; every rank calls it.

    Rank 0 writes, the others wait at a barrier; all get the path back (None without a run directory).
    """
    state = {**state, "rng": gather_objects(get_rng_state(), env)}
    path = checkpoints.save(model, state, step, best=best) if env.is_main and checkpoints is not None else None
    barrier(env)
    return broadcast_object(path, env)


def latest_checkpoint(checkpoints: CheckpointManager | None, env: DistEnv) -> Path | None:
    """Rank 0's latest complete checkpoint, on every rank (None: nothing to resume)."""
    latest = checkpoints.latest() if checkpoints is not None and env.is_main else None
    return broadcast_object(latest, env)


def optimizer_state(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                    scaler: torch.amp.GradScaler) -> dict[str, Any]:
    """AdamW moments, schedule position and loss scale. The schedule's shape (``lr_lambdas``) is left out:
    it comes from the configuration of the run that resumes."""
    scheduler_state = dict(scheduler.state_dict(), lr_lambdas=[None] * len(scheduler.lr_lambdas))
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler_state, "scaler": scaler.state_dict()}


def restore_optimizer(state: dict[str, Any], optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler) -> None:
    """Load :func:`optimizer_state` back, keeping this run's hyperparameters.

    The checkpoint keeps its moments and schedule position; learning rates, weight decay and betas are the
    ones configured now, so a setting changed between attempts takes effect from the resumed step.
    """
    configured = [{k: v for k, v in g.items() if k not in ("params", "lr")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for group, wanted in zip(optimizer.param_groups, configured, strict=True):
        group.update(wanted)
    set_base_lrs(scheduler, [group["initial_lr"] for group in optimizer.param_groups])
    scaler.load_state_dict(state["scaler"])


def resume_training(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LambdaLR, scaler: torch.amp.GradScaler,
                    env: DistEnv) -> dict[str, Any]:
    """Load checkpoint ``path`` into a run: weights (moved to the run's device), optimiser moments, schedule
    position and loss scale (:func:`restore_optimizer`) and this rank's RNG; returns the saved state for the
    trainer's own parts (data or curriculum position, metrics position)."""
    state = load_checkpoint(path, model, map_location="cpu")
    model.to(env.device)
    restore_optimizer(state, optimizer, scheduler, scaler)
    restore_rng(state, env)
    return state


def restore_rng(state: dict[str, Any], env: DistEnv) -> None:
    """This rank's random generators as saved (rank 0's when the world grew since)."""
    rng = state["rng"]
    set_rng_state(rng[env.rank] if env.rank < len(rng) else rng[0])


def load_checkpoint(path: str | Path, model: nn.Module, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the weights into ``model`` (strictly) and return the saved training state."""
    path = Path(path)
    recover(path)
    if not _is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint (needs {MODEL_FILE}, {STATE_FILE}, {META_FILE})")
    check_shapes(path / MODEL_FILE, model)
    load_model(model, str(path / MODEL_FILE), strict=True, device=str(map_location))
    # The state holds only our own objects (tensors, RNG tuples, NumPy arrays), written by this code.
    return torch.load(path / STATE_FILE, map_location=map_location, weights_only=False)


def check_shapes(weights: str | Path, model: nn.Module) -> None:
    """Refuse, in one line, weights of another model size (instead of one ``size mismatch`` line per tensor)."""
    with safe_open(str(weights), framework="pt") as file:
        saved = {name: list(file.get_slice(name).get_shape()) for name in file.keys()}
    wanted = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    differ = [name for name in saved if name in wanted and saved[name] != wanted[name]]
    if differ:
        name = differ[0]
        raise ConfigError(f"{weights} holds a model of another size than this run's ({len(differ)} tensors "
                          f"differ, e.g. {name} is {saved[name]} there and {wanted[name]} here): resume with "
                          "the model config it was written with, or use a new run_dir")


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (MODEL_FILE, STATE_FILE, META_FILE))
