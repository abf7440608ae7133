"""``rxmrl train ...``: the training commands (torch is imported inside the handlers).

``rxmrl train supervised --config FILE [--stages 1,3] [--set key=value ...]`` runs the supervised warm
start (:mod:`rxmrl.training.supervised`). Other training commands (MRL) join the same ``train`` group
through :func:`train_subcommands`.
"""

from __future__ import annotations

import argparse


def train_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The sub-command group under ``rxmrl train``, created on first use, shared by every training module."""
    existing = subparsers.choices.get("train")
    if existing is not None:
        return existing._rxmrl_train_commands  # type: ignore[attr-defined]
    train = subparsers.add_parser("train", help="train a Reactive Transformer (supervised warm start, MRL)")
    commands = train.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND")
    train.set_defaults(func=lambda args: (train.print_help(), 2)[1])
    train._rxmrl_train_commands = commands  # type: ignore[attr-defined]
    return commands


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch threads for the run. Torch's default is one per core, so two runs side by side
    on a 2-core machine hold four threads that wait on each other."""
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads (default: torch's, one per core; 1 when other jobs share the cores)")


def parse_stages(text: str) -> list[int]:
    """``"1,3"`` -> ``[1, 3]``; raises ``argparse.ArgumentTypeError`` naming the bad part."""
    try:
        stages = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stages {text!r}: expected comma-separated stage numbers, e.g. 1,3")
    if not stages or any(s not in (1, 2, 3, 4) for s in stages):
        raise argparse.ArgumentTypeError(f"--stages {text!r}: expected numbers from 1 to 4, e.g. 1,3")
    return stages


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from rxmrl.config import add_config_arguments

    supervised = train_subcommands(subparsers).add_parser(
        "supervised", help="supervised warm start: stages 1-4, one checkpoint per stage",
        description="Joint LM pre-training, interaction SFT, memory-attention pre-training and "
                    "memory-aware training; writes RUN_DIR/stage-N/ (model + tokenizer + config) per stage.")
    add_config_arguments(supervised)
    supervised.add_argument("--stages", type=parse_stages, default=None, metavar="1,2,3,4",
                            help="run only these stages (default: the config's `stages`)")
    supervised.add_argument("--run-dir", default=None, help="override the config's run_dir")
    add_threads_argument(supervised)
    supervised.set_defaults(func=_supervised)


def _supervised(args: argparse.Namespace) -> int:
    from rxmrl.config import config_from_args
    from rxmrl.runtime import check_counts, torch_threads
    from rxmrl.training.supervised import SupervisedConfig, format_report, run_supervised

    check_counts(args, "threads")
    overrides = list(args.overrides) + ([f"run_dir={args.run_dir}"] if args.run_dir else [])
    config = config_from_args(SupervisedConfig, argparse.Namespace(config=args.config, overrides=overrides))
    with torch_threads(args.threads):
        reports = run_supervised(config, args.stages)
    from rxmrl.training.distributed import init_distributed

    if init_distributed().is_main:
        print("\nsupervised warm start:")
        for report in reports:
            print(format_report(report))
        print(f"total {sum(r.seconds for r in reports if not r.skipped):.1f} s")
    return 0
