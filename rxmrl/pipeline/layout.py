"""Where ``rxmrl run`` keeps each phase's outputs in its run directory, and how they are read back.

The phases (:mod:`rxmrl.pipeline.run`) write here and the report (:mod:`rxmrl.pipeline.report`) reads here:
both import this module, so neither imports the other. The phases themselves, their order and markers are
:mod:`rxmrl.pipeline.phases`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rxmrl.pipeline.phases import PHASES, marker_path

PHASE_TITLES = {"data": "data and tokenizer", "supervised": "supervised warm start (stages 1-4)",
                "mrl": "MRL curriculum", "dmpo": "DMPO on the same curriculum", "baseline": "stateless baseline (TRL SFT)",
                "eval": "reward-range evaluation", "retention": "retention (reference conversation in memory)",
                "audit": "reward audit", "latency": "latency per turn",
                "report": "report"}
CONFIG_FILE, TIMINGS_FILE = "config.toml", "timings.json"


def model_dirs(run_dir: Path) -> dict[str, str]:
    """What each evaluated model name loads (``rxmrl.evaluation.load_agent`` specs)."""
    run_dir = Path(run_dir)
    return {"warm_start": str(run_dir / "warmstart" / "stage-4"), "mrl": str(run_dir / "mrl" / "final"),
            "dmpo": str(run_dir / "dmpo" / "final"), "baseline": str(run_dir / "baseline"), "oracle": "oracle", "random": "random"}


def read_timings(run_dir: Path) -> dict[str, float]:
    """Wall seconds of every finished phase, in phase order (from the phase markers)."""
    timings = {}
    for phase in PHASES:
        path = marker_path(run_dir, phase)
        if path.is_file():
            timings[phase] = json.loads(path.read_text(encoding="utf-8"))["seconds"]
    return timings
