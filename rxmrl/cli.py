"""The ``rxmrl`` command.

Each feature owns its subcommands: a module listed in ``COMMAND_MODULES`` exposes
``add_commands(subparsers)`` and sets ``func`` on the parsers it adds. Modules are imported
when the parser is built, so keep their top level light (import torch inside the handlers).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "rxmrl.evaluation.commands",
    "rxmrl.model.commands",
    "rxmrl.data.commands",
    "rxmrl.demo",
    "rxmrl.training.commands",
    "rxmrl.training.mrl_commands",
    "rxmrl.baseline.commands",
    "rxmrl.pipeline.commands",
    "rxmrl.convert.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxmrl",
        description="Memory Reinforcement Learning for Reactive Transformers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
