"""The ``rxmrl`` command.

Each feature owns its subcommands: a module listed in ``COMMAND_MODULES`` exposes
``add_commands(subparsers)`` and sets ``func`` on the parsers it adds. Modules are imported
when the parser is built, so keep their top level light (import torch inside the handlers).

One error path: a handler raises :class:`rxmrl.runtime.InputError` (``ConfigError``,
``CurriculumValidationError``, ``ConversionError``, ``ModelFolderError`` are ones) for bad input, or another
:class:`rxmrl.runtime.RunError` for a run that cannot go on; :func:`main` prints its message as one
``error:`` line on stderr and returns its exit code (2 for bad input). Anything else is a bug and keeps its
traceback.
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
    "rxmrl.study.commands",
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


def report_error(message: object) -> None:
    """The one way a command says what went wrong: ``error: MESSAGE`` on stderr, on one line."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors that say everything (bad input, a locked run directory, a diverged run, a
    full disk) print one ``error:`` line on stderr and exit 2 (bad input) or 1, without a traceback."""
    from rxmrl.runtime import RunError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RunError as error:
        report_error(error)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
