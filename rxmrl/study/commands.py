"""``rxmrl study seeds``: does a warm-start recipe read its memory on every seed and perturbation?

    rxmrl study seeds --config experiments/warmstart.toml --init runs/warmstart/stage-3 --out runs/study/today \\
        [--seeds 0,1,2,3] [--perturbations fused,foreach] [--stages 4] [--set stage4.key=value ...] [--cores 2]

Trains stage 4 (or stages 3-4 from a stage-2 ``--init``) once per seed and perturbation, measures each run's
retention at ``steps-8`` with memory and with a reset memory, and writes ``table.txt``, ``summary.json`` and
``recall.png`` (:mod:`rxmrl.study.summary`). The recipe is resolved once and saved as ``OUT/recipe.toml``;
every run reads that snapshot, so editing the config file while a study runs cannot change its later runs.
Re-running the same command resumes; a different request, or a config file that no longer resolves to the
saved recipe, is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rxmrl.study.plan import PERTURBATIONS


def _numbers(text: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated whole numbers, e.g. 0,1,2,3")
    if not numbers:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least one number")
    return numbers


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from rxmrl.config import add_config_arguments

    study = subparsers.add_parser("study", help="studies over many runs (seed robustness)")
    commands = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND")
    study.set_defaults(func=lambda args: (study.print_help(), 2)[1])
    seeds = commands.add_parser(
        "seeds", help="a warm-start recipe over seeds x perturbations: which runs read their memory",
        description=__doc__.split("\n\n")[0])
    add_config_arguments(seeds, required=True)
    seeds.add_argument("--init", type=Path, required=True,
                       help="the checkpoint every run starts from (stage 3 for --stages 4, stage 2 for 3,4)")
    seeds.add_argument("--out", type=Path, required=True, help="the study folder (resumable)")
    seeds.add_argument("--seeds", type=_numbers, default=[0, 1, 2, 3], metavar="0,1,2,3")
    seeds.add_argument("--perturbations", default="fused,foreach", metavar=",".join(PERTURBATIONS),
                       help="what each seed is run under (default: fused,foreach)")
    seeds.add_argument("--stages", type=_numbers, default=[4], metavar="4 | 3,4")
    seeds.add_argument("--steps", type=int, default=8, help="retention on steps-N validation episodes")
    seeds.add_argument("--episodes", type=int, default=64, help="validation episodes of the retention measure")
    seeds.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                       help="torch threads in flight at most (runs start while they fit)")
    seeds.set_defaults(func=_seeds)


def request_of(args: argparse.Namespace) -> dict:
    """What the study was asked for (``study.json``); a resume must ask for the same."""
    return {"config": str(args.config.resolve()), "recipe": list(args.overrides), "init": str(args.init.resolve()),
            "seeds": args.seeds, "perturbations": args.perturbations.split(","), "stages": args.stages,
            "retention": {"steps": args.steps, "episodes": args.episodes}}


RECIPE = "recipe.toml"


def check_request(args: argparse.Namespace) -> tuple[list, object]:
    """The resolved recipe and the planned runs (which read its snapshot ``OUT/recipe.toml``), after every
    check that needs no training: a bad request raises ``ConfigError``."""
    import copy

    from rxmrl.config import ConfigError, apply_overrides, changed_keys, config_from_args, validate
    from rxmrl.study.plan import parse_perturbations, plan_runs
    from rxmrl.training.supervised import SupervisedConfig

    if sorted(set(args.stages)) not in ([4], [3, 4]):
        raise ConfigError(f"--stages {','.join(map(str, args.stages))}: a study trains stage 4 or stages 3,4")
    if not (args.init / "config.json").is_file():
        raise ConfigError(f"--init {args.init}: not a model folder (no config.json)")
    if args.episodes < 1 or args.steps < 1 or args.cores < 1:
        raise ConfigError("--episodes, --steps and --cores must be >= 1")
    import torch

    try:
        perturbations = parse_perturbations(args.perturbations.split(","), torch.cuda.is_available())
    except ValueError as error:
        raise ConfigError(f"--perturbations: {error}") from None
    out = args.out.resolve()
    recipe = config_from_args(SupervisedConfig, argparse.Namespace(config=args.config, overrides=args.overrides))
    runs = plan_runs(out / RECIPE, [], args.init.resolve(), out, args.seeds, perturbations, sorted(set(args.stages)))
    for run in runs:  # every run's config is complete and valid before the first one trains
        validate(apply_overrides(copy.deepcopy(recipe), run.overrides))
    saved = out / "study.json"
    if saved.is_file():
        before, now = json.loads(saved.read_text(encoding="utf-8")), request_of(args)
        changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
        if changed:
            raise ConfigError(f"{out} holds a study asked with other {', '.join(changed)}; use another --out")
    changed = changed_keys(out / RECIPE, recipe)
    if changed:
        raise ConfigError(f"{args.config} no longer resolves to the recipe {out / RECIPE} was started with "
                          f"(changed: {', '.join(changed)}); use another --out")
    return runs, recipe


def _seeds(args: argparse.Namespace) -> int:
    from rxmrl.runtime import RunLock, write_json, write_text
    from rxmrl.study.runner import collect, run_study
    from rxmrl.study.summary import format_table, plot_recall, summarise

    from rxmrl.config import save_config

    runs, recipe = check_request(args)
    out = args.out.resolve()
    # the lock sits in a folder of its own: a lock on OUT itself would refuse the workers their run folders
    with RunLock(out / ".study"):
        write_json(out / "study.json", request_of(args))
        if not (out / RECIPE).is_file():
            save_config(recipe, out / RECIPE)
        failed = run_study(runs, out, args.cores, request_of(args)["retention"])
        summary = summarise(collect(runs, out))
        table = format_table(summary)
        write_text(out / "table.txt", table + "\n")
        write_json(out / "summary.json", summary)
        plot_recall(summary, out / "recall.png")
    print(table)
    print(f"wrote {out / 'table.txt'}, {out / 'summary.json'}, {out / 'recall.png'}")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)} (re-run the same command to retry them)",
              file=sys.stderr)
        return 1
    return 0
