"""Metrics to ``metrics.jsonl`` (one JSON object per line) and TensorBoard, from rank 0 only.

JSON lines are the source of truth for reports (easy to load with pandas or a few lines of Python);
TensorBoard is for watching a run live. Both are flushed on every write, so a crashed run keeps its curves.
A checkpoint records how far ``metrics.jsonl`` had got (:meth:`MetricsLogger.position`); a resumed run cuts
the file back there (:meth:`MetricsLogger.rewind`), so the steps it re-runs are recorded once, not twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rxmrl.runtime import disk_space_named, fsync


class MetricsLogger:
    """``log(step, {"loss": 2.3, "lr/encoder": 1e-4})``; a no-op when ``enabled`` is False (ranks > 0)."""

    def __init__(self, run_dir: str | Path | None, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled and run_dir is not None
        self.path: Path | None = None
        self._file = None
        self._writer = None
        if not self.enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        self._tensorboard = run_dir / "tensorboard" if tensorboard else None
        self._open_writer(purge_step=None)

    def _open_writer(self, purge_step: int | None) -> None:
        if self._tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

            self._writer = SummaryWriter(log_dir=str(self._tensorboard), purge_step=purge_step)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        record = {"step": step, "time": time.time(), **{k: _json_number(v) for k, v in values.items()}}
        with disk_space_named(self.path):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, step)
            self._writer.flush()

    def position(self) -> int | None:
        """Bytes of ``metrics.jsonl`` written so far (flushed to disk), for a checkpoint to record."""
        if self._file is None:
            return None
        self._file.flush()
        fsync(self.path)
        return self._file.tell()

    def rewind(self, position: int | None, step: int) -> None:
        """Drop what was recorded after a checkpoint: ``metrics.jsonl`` back to ``position`` bytes, and
        TensorBoard events after ``step``. Records a killed attempt wrote past it would otherwise repeat."""
        if self._file is None or position is None or position >= self._file.tell():
            return
        self._file.truncate(position)
        self._file.seek(position)
        if self._writer is not None:
            self._writer.close()
            self._open_writer(purge_step=step + 1)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (non-finite values come back as strings "nan"/"inf")."""
    with Path(path).open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _json_number(value: float) -> float | str:
    """JSON has no NaN/inf; write them as strings instead of producing invalid JSON."""
    return value if math.isfinite(value) else str(value)
