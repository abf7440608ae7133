"""``rxmrl run CONFIG [--set key=value ...] [--phases eval,report] [--redo mrl]``: a whole experiment in one
command.

The top level stays light (argparse only); the phases import torch and friends when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from rxmrl.pipeline.phases import PHASES

    run = subparsers.add_parser(
        "run", help="one experiment end to end: warm start, MRL, baseline, evaluation, latency, report",
        description=f"Runs the phases {', '.join(PHASES)} in order into the config's run_dir; re-running the "
                    "same command skips finished phases and resumes the interrupted one.")
    run.add_argument("config", type=Path, help="TOML config, e.g. experiments/quickstart.toml")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config field, e.g. --set mrl.mrl.ppo_epochs=2 (repeatable)")
    run.add_argument("--phases", default=None, metavar="P1,P2",
                     help=f"run only these phases (default: all of {','.join(PHASES)}), e.g. eval,latency,report")
    run.add_argument("--redo", default=None, metavar="P1,P2",
                     help="redo these phases and every phase built on them (their outputs are deleted first), "
                          "e.g. --redo mrl also redoes eval, retention, audit, latency and report")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rxmrl.config import load_config
    from rxmrl.pipeline.config import PipelineConfig
    from rxmrl.pipeline.phases import check_phase_names
    from rxmrl.pipeline.run import run_pipeline

    phases, redo = _phase_list(args.phases), _phase_list(args.redo)
    check_phase_names(phases or (), "--phases")
    check_phase_names(redo or (), "--redo")
    run_pipeline(load_config(PipelineConfig, args.config, args.overrides), phases, redo=redo)
    return 0


def _phase_list(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None
