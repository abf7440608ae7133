"""``rxmrl train mrl|dmpo --config FILE --init CHECKPOINT [--set key=value ...]``: the MRL curriculum, trained
by the policy-gradient loss (``mrl``) or by DMPO's preference pairs (``dmpo``: ``mrl.algorithm = "dmpo"``).

Joins the ``train`` command group of :func:`rxmrl.training.commands.train_subcommands`. Torch is imported
inside the handler.
"""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from rxmrl.training.commands import train_subcommands

    train = train_subcommands(subparsers)
    mrl = train.add_parser(
        "mrl", help="memory reinforcement learning (PPO/IMPO) over a curriculum, from a warm start",
        description="Runs the curriculum stages of the config on the warm-started policy; resumes from the "
                    "run directory's latest checkpoint. Writes metrics.jsonl, TensorBoard events, checkpoints, "
                    "best-stage-N/ and final/ model dirs.")
    _add_run_arguments(mrl)
    mrl.set_defaults(func=_mrl, algorithm=None)
    dmpo = train.add_parser(
        "dmpo", help="direct memory and preference optimisation over the same curriculum, from a warm start",
        description="`rxmrl train mrl` with mrl.algorithm = \"dmpo\": at every step, preference pairs of answers "
                    "from one STM (the reference answer and sampled ones, ordered by the reward), the DPO loss of "
                    "rxmrl.training.mrl.dmpo, memory written with the accepted answer. Same config, stages, "
                    "checkpoints, resume and outputs as `rxmrl train mrl`.")
    _add_run_arguments(dmpo)
    dmpo.set_defaults(func=_mrl, algorithm="dmpo")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from rxmrl.config import add_config_arguments
    from rxmrl.training.commands import add_threads_argument

    add_config_arguments(parser)
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="warm-start model dir (config.json + model.safetensors [+ tokenizer.json]); "
                             "overrides the config's `init`")
    parser.add_argument("--run-dir", default=None, help="override the config's run_dir")
    add_threads_argument(parser)


def _mrl(args: argparse.Namespace) -> int:
    from rxmrl.config import ConfigError, config_from_args
    from rxmrl.runtime import InputError, check_counts, torch_threads
    from rxmrl.training.mrl.config import MrlRunConfig

    check_counts(args, "threads")
    overrides = list(args.overrides)
    overrides += [f"init={args.init}"] if args.init else []
    overrides += [f"run_dir={args.run_dir}"] if args.run_dir else []
    overrides += [f"mrl.algorithm={args.algorithm}"] if args.algorithm else []  # `train dmpo`: the algorithm wins
    config = config_from_args(MrlRunConfig, argparse.Namespace(config=args.config, overrides=overrides))
    if not config.init:
        raise ConfigError("no warm start: pass --init CHECKPOINT (a model dir) or set `init` in the config")
    from rxmrl.training.mrl.run import run_mrl

    try:
        with torch_threads(args.threads):
            run_mrl(config)
    except FileNotFoundError as error:
        raise InputError(str(error)) from error
    return 0
