"""``rxmrl run CONFIG [--set key=value ...] [--phases eval,report]``: a whole experiment in one command.

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
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rxmrl.config import ConfigError, load_config
    from rxmrl.pipeline.config import PipelineConfig
    from rxmrl.pipeline.run import PHASES, run_pipeline

    phases = [p.strip() for p in args.phases.split(",") if p.strip()] if args.phases else None
    unknown = sorted(set(phases or ()) - set(PHASES))
    if unknown:
        raise ConfigError(f"--phases names unknown phase(s) {unknown}; expected some of {list(PHASES)}")
    run_pipeline(load_config(PipelineConfig, args.config, args.overrides), phases)
    return 0
