"""``rxmrl train mrl --config FILE --init CHECKPOINT [--set key=value ...]``: the MRL curriculum.

Joins the ``train`` command group of :func:`rxmrl.training.commands.train_subcommands`. Torch is imported
inside the handler.
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from rxmrl.config import add_config_arguments
    from rxmrl.training.commands import train_subcommands

    mrl = train_subcommands(subparsers).add_parser(
        "mrl", help="memory reinforcement learning (PPO/IMPO) over a curriculum, from a warm start",
        description="Runs the curriculum stages of the config on the warm-started policy; resumes from the "
                    "run directory's latest checkpoint. Writes metrics.jsonl, TensorBoard events, checkpoints, "
                    "best-stage-N/ and final/ model dirs.")
    add_config_arguments(mrl)
    mrl.add_argument("--init", default=None, metavar="CHECKPOINT",
                     help="warm-start model dir (config.json + model.safetensors [+ tokenizer.json]); "
                          "overrides the config's `init`")
    mrl.add_argument("--run-dir", default=None, help="override the config's run_dir")
    mrl.set_defaults(func=_mrl)


def _mrl(args: argparse.Namespace) -> int:
    from rxmrl.config import ConfigError, config_from_args

    from rxmrl.training.mrl.config import MrlRunConfig

    overrides = list(args.overrides)
    overrides += [f"init={args.init}"] if args.init else []
    overrides += [f"run_dir={args.run_dir}"] if args.run_dir else []
    try:
        config = config_from_args(MrlRunConfig, argparse.Namespace(config=args.config, overrides=overrides))
    except ConfigError as error:
        print(f"error: {error}")
        return 2
    if not config.init:
        print("error: no warm start: pass --init CHECKPOINT (a model dir) or set `init` in the config")
        return 2
    from rxmrl.training.mrl.run import run_mrl

    try:
        run_mrl(config)
    except FileNotFoundError as error:
        print(f"error: {error}")
        return 2
    return 0
