"""Atomic checkpoints: a crash mid-write never damages the checkpoints already on disk.

Layout of ``<run_dir>/checkpoints``::

    step-00000100/   model.safetensors   weights (safetensors: no pickle, tied weights handled)
                     state.pt            optimizer, scheduler, grad scaler, RNG per rank, data position,
                                         step, any extra state (e.g. curriculum stage)
                     meta.json           step and file list, written last
    step-00000200/
    best/            the checkpoint with the best evaluation metric so far

A checkpoint is first written into a hidden ``.tmp-...`` directory, its files are fsynced, and then the
directory is renamed into place with ``os.replace`` -- a single atomic filesystem operation. A killed
write leaves only a ``.tmp-`` directory, which ``latest()`` ignores and the next save removes. The last
``keep_last`` step checkpoints are kept; ``best`` is never pruned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

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
        """Write ``step-N`` (and copy it to ``best`` when asked) atomically; prune old ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        final = self._write(model, state, step, f"step-{step:08d}")
        if best:
            self._write(model, state, step, "best")
        self._prune()
        return final

    def latest(self) -> Path | None:
        """The complete step checkpoint with the highest step, or None."""
        steps = self.complete_steps()
        return self.directory / f"step-{steps[-1]:08d}" if steps else None

    def best(self) -> Path | None:
        path = self.directory / "best"
        return path if _is_complete(path) else None

    def complete_steps(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir()
                 if (m := _STEP_DIR.fullmatch(p.name))]
        return sorted(step for step, path in found if _is_complete(path))

    def _write(self, model: nn.Module, state: dict[str, Any], step: int, name: str) -> Path:
        temporary = self.directory / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        save_model(model, str(temporary / MODEL_FILE))
        torch.save(state, temporary / STATE_FILE)
        (temporary / META_FILE).write_text(json.dumps({"step": step, "files": [MODEL_FILE, STATE_FILE]}))
        for file in temporary.iterdir():
            _fsync(file)
        final = self.directory / name
        if final.exists():  # os.replace cannot overwrite a non-empty directory: move the old one aside
            retired = self.directory / f".old-{name}-{os.getpid()}"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(final, retired)
            os.replace(temporary, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, final)
        _fsync(self.directory)
        return final

    def _prune(self) -> None:
        for step in self.complete_steps()[:-self.keep_last]:
            shutil.rmtree(self.directory / f"step-{step:08d}", ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        for path in self.directory.glob(".tmp-*"):
            shutil.rmtree(path, ignore_errors=True)


def load_checkpoint(path: str | Path, model: nn.Module, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the weights into ``model`` (strictly) and return the saved training state."""
    path = Path(path)
    if not _is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint (needs {MODEL_FILE}, {STATE_FILE}, {META_FILE})")
    load_model(model, str(path / MODEL_FILE), strict=True, device=str(map_location))
    # The state holds only our own objects (tensors, RNG tuples, NumPy arrays), written by this code.
    return torch.load(path / STATE_FILE, map_location=map_location, weights_only=False)


def find_checkpoint(path: str | Path) -> Path:
    """A complete checkpoint from a checkpoint directory, a ``checkpoints/`` folder or a run directory
    (the latest step in the last two cases): what ``--init CHECKPOINT`` accepts."""
    path = Path(path)
    if _is_complete(path):
        return path
    for directory in (path, path / "checkpoints"):
        latest = CheckpointManager(directory).latest()
        if latest is not None:
            return latest
    raise FileNotFoundError(f"no complete checkpoint at {path} (looked for {MODEL_FILE} + {STATE_FILE} + "
                            f"{META_FILE} there, and for step-* directories in it and in {path / 'checkpoints'})")


def load_weights(path: str | Path, model: nn.Module, strict: bool = True,
                 device: str | torch.device = "cpu") -> nn.Module:
    """Only the weights (a warm start for the next stage): no optimizer, RNG or data position."""
    load_model(model, str(find_checkpoint(path) / MODEL_FILE), strict=strict, device=str(device))
    return model


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in (MODEL_FILE, STATE_FILE, META_FILE))


def _fsync(path: Path) -> None:
    """Flush a file (or a directory entry) to disk so the rename cannot overtake the data."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
