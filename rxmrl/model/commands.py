"""``rxmrl model ...``: inspect presets and parameter counts (torch is imported inside handlers)."""

from __future__ import annotations

import argparse
import json


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="inspect Reactive Transformer configurations")
    commands = model.add_subparsers(dest="model_command", metavar="MODEL_COMMAND")
    model.set_defaults(func=lambda args: (model.print_help(), 2)[1])

    info = commands.add_parser("info", help="print a preset's resolved config and parameter counts")
    info.add_argument("--preset", required=True, help="preset name (see `rxmrl model presets`)")
    info.set_defaults(func=_info)

    presets = commands.add_parser("presets", help="list the presets with their sizes")
    presets.set_defaults(func=_presets)


def _info(args: argparse.Namespace) -> int:
    from rxmrl.model.config import PRESETS
    from rxmrl.model.sizes import parameter_table

    if args.preset not in PRESETS:
        print(f"unknown preset {args.preset!r}; available: {', '.join(sorted(PRESETS))}")
        return 2
    print(json.dumps(PRESETS[args.preset].to_dict(), indent=2))
    print()
    print(parameter_table(args.preset))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from rxmrl.model.config import PRESETS
    from rxmrl.model.sizes import count_preset

    print(f"{'preset':<24}{'dim':>5}{'layers':>7}{'experts':>9}{'slots':>7}{'vocab':>7}{'total':>10}")
    for name, config in PRESETS.items():
        total = count_preset(config)["total"]
        print(f"{name:<24}{config.dim:>5}{config.num_layers:>7}"
              f"{f'{config.experts_per_token}/{config.num_experts}':>9}{config.stm_slots:>7}"
              f"{config.vocab_size:>7}{total / 1e6:>9.2f}M")
    return 0
