"""Running a seed study: one worker process per run, as many at once as the cores allow, resumable.

    OUT/study.json               the request (config, recipe, init, seeds, perturbations, stages, episodes)
    OUT/runs/NAME/spec.json      what the run's worker does; OUT/runs/NAME/log.txt its output (appended)
    OUT/runs/NAME/stage-N/       the supervised stages it trained (``rxmrl train supervised``'s layout)
    OUT/runs/NAME/run.json       its record: retention with and without memory, the gap, probe, wall time
    OUT/summary.json, table.txt, recall.png

A run with a ``run.json`` is done; a killed one resumes from its stage's last checkpoint (the supervised
stages resume themselves) and a finished stage is not trained again. Each worker has its own torch threads,
and runs start while the threads in flight fit the cores, so a 2-core machine trains two 1-thread runs side by
side. The study folder belongs to one study process at a time (its lock), each run folder to one worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rxmrl.study.plan import StudyRun

RECORD = "run.json"


def is_done(run_dir: Path) -> bool:
    return (run_dir / RECORD).is_file()


def launch(run: StudyRun, run_dir: Path, retention: dict[str, Any]) -> subprocess.Popen:
    """Start the run's worker (``python -m rxmrl.study.worker RUN_DIR``) with its torch threads."""
    from rxmrl.runtime import write_json

    write_json(run_dir / "spec.json", {**run.spec(), "retention": retention})
    env = {**os.environ, "OMP_NUM_THREADS": str(run.threads)}
    log = open(run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115 - the child holds it open
    try:
        return subprocess.Popen([sys.executable, "-m", "rxmrl.study.worker", str(run_dir)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def run_study(runs: Sequence[StudyRun], out: Path, cores: int, retention: dict[str, Any],
              say: Callable[[str], None] = print, poll_seconds: float = 2.0) -> list[str]:
    """Train and measure every run not done yet; returns the names of the runs that failed."""
    pending = [run for run in runs if not is_done(out / "runs" / run.name)]
    running: list[tuple[StudyRun, subprocess.Popen, float]] = []
    failed: list[str] = []
    if len(pending) < len(runs):
        say(f"{len(runs) - len(pending)} of {len(runs)} runs already done")
    while pending or running:
        busy = sum(run.threads for run, _, _ in running)
        while pending and (not running or busy + pending[0].threads <= cores):
            run = pending.pop(0)
            run_dir = out / "runs" / run.name
            run_dir.mkdir(parents=True, exist_ok=True)
            running.append((run, launch(run, run_dir, retention), time.monotonic()))
            busy += run.threads
            say(f"started {run.name} ({run.threads} thread{'s' * (run.threads > 1)}); log: {run_dir / 'log.txt'}")
        time.sleep(poll_seconds)
        for entry in list(running):
            run, process, started = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            minutes = (time.monotonic() - started) / 60
            if process.returncode == 0 and is_done(out / "runs" / run.name):
                record = json.loads((out / "runs" / run.name / RECORD).read_text(encoding="utf-8"))
                say(f"finished {run.name} in {minutes:.1f} min: recall {record['recall']['mean']:.3f}, "
                    f"reset memory {record['reset_recall']['mean']:.3f}")
            else:
                failed.append(run.name)
                say(f"failed {run.name} (exit {process.returncode}) after {minutes:.1f} min; see "
                    f"{out / 'runs' / run.name / 'log.txt'}")
    return failed


def collect(runs: Sequence[StudyRun], out: Path) -> list[dict[str, Any]]:
    """The records of the runs that are done, in the study's order."""
    return [json.loads((out / "runs" / run.name / RECORD).read_text(encoding="utf-8"))
            for run in runs if is_done(out / "runs" / run.name)]
