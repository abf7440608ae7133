"""``rxmrl baseline ...``: train the stateless LLM baseline, compare sizes and per-turn latency with RxT.

    rxmrl baseline train --config experiments/baseline.toml [--set sft.max_steps=50]
    rxmrl baseline grpo --config experiments/baseline_grpo.toml      # optional RL on top of the SFT model
    rxmrl baseline size --preset nano
    rxmrl baseline latency --checkpoint runs/baseline --preset nano --turns 9

Torch, transformers and TRL are imported inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rxmrl.config import add_config_arguments


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    baseline = subparsers.add_parser("baseline", help="the stateless LLM baseline (TRL SFT, latency vs RxT)")
    commands = baseline.add_subparsers(dest="baseline_command", metavar="BASELINE_COMMAND")
    baseline.set_defaults(func=lambda args: (baseline.print_help(), 2)[1])

    train = commands.add_parser("train", help="SFT a size-matched Llama on conversation histories with TRL")
    add_config_arguments(train)
    train.set_defaults(func=_train)

    grpo = commands.add_parser("grpo", help="GRPO (TRL) with the memory-retention reward from an SFT model")
    add_config_arguments(grpo)
    grpo.set_defaults(func=_grpo)

    size = commands.add_parser("size", help="print the stateless model's size next to the RxT preset's")
    size.add_argument("--preset", default="nano", help="RxT preset to match")
    size.add_argument("--match", default="total", choices=("total", "decoder", "decoder_active"))
    size.set_defaults(func=_size)

    latency = commands.add_parser("latency", help="per-turn latency and compute, stateless vs RxT")
    latency.add_argument("--checkpoint", type=Path, help="a `baseline train` output dir (default: fresh model)")
    latency.add_argument("--rxt-checkpoint", type=Path, help="an RxT save_pretrained dir (default: fresh preset)")
    latency.add_argument("--preset", default="nano", help="RxT preset when no --rxt-checkpoint is given")
    latency.add_argument("--turns", type=int, default=9, help="interactions in the conversation")
    latency.add_argument("--repeats", type=int, default=3, help="timings per turn (the median is reported)")
    latency.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared CPU)")
    latency.add_argument("--json", type=Path, help="also write the rows as JSON here")
    latency.add_argument("--plot", type=Path, help="also draw the rows as a PNG here")
    latency.set_defaults(func=_latency)


def _train(args: argparse.Namespace) -> int:
    from rxmrl.baseline.train import BaselineConfig, train_baseline
    from rxmrl.config import config_from_args, format_config

    config = config_from_args(BaselineConfig, args)
    print(format_config(config))
    result = train_baseline(config)
    print(f"loss before {result.loss_before:.4f} -> after {result.loss_after:.4f} "
          f"({result.train_rows} rows, {result.seconds:.0f} s)")
    return 0


def _grpo(args: argparse.Namespace) -> int:
    from rxmrl.baseline.grpo import GRPORunConfig, train_baseline_grpo
    from rxmrl.config import config_from_args, format_config

    config = config_from_args(GRPORunConfig, args)
    print(format_config(config))
    result = train_baseline_grpo(config)
    print(f"saved to {result.output_dir} ({result.seconds:.0f} s)")
    return 0


def _size(args: argparse.Namespace) -> int:
    from rxmrl.baseline.model import build_stateless_model, size_report
    from rxmrl.model import count_preset, get_preset
    from rxmrl.data import default_tokenizer

    rxt = get_preset(args.preset, vocab_size=default_tokenizer().vocab_size)
    model = build_stateless_model(rxt, args.match)
    report = size_report(model, rxt, args.match)
    config = model.config
    print(f"RxT {args.preset}: " + ", ".join(f"{k} {v:,}" for k, v in count_preset(rxt).items()))
    print(f"stateless Llama: {report['stateless']:,} parameters ({config.num_hidden_layers} layers, dim "
          f"{config.hidden_size}, ffn {config.intermediate_size}), {report['relative_difference']:+.2%} vs "
          f"RxT {args.match} {report['rxt']:,}")
    return 0


def _latency(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from rxmrl.baseline.latency import format_latency_table, latency_conversation, measure_latency, plot_latency
    from rxmrl.baseline.model import build_stateless_model
    from rxmrl.baseline.train import load_baseline
    from rxmrl.model import ReactiveTransformer, get_preset
    from rxmrl.model.folder import folder_tokenizer
    from rxmrl.model.rxt import load_rxt
    from rxmrl.runtime import check_counts, check_output
    from rxmrl.data import default_tokenizer

    check_counts(args, "turns", "repeats", "threads")
    for option in ("json", "plot"):
        if getattr(args, option) is not None:
            check_output(getattr(args, option), f"--{option}")
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        stateless, tokenizer = load_baseline(args.checkpoint)
    else:
        tokenizer = default_tokenizer()
        stateless = None
    if args.rxt_checkpoint is not None:
        rxt = load_rxt(args.rxt_checkpoint, role="--rxt-checkpoint")
        if args.checkpoint is None:
            tokenizer = folder_tokenizer(args.rxt_checkpoint, rxt.config.vocab_size, default=lambda: tokenizer)
    else:
        torch.manual_seed(0)
        rxt = ReactiveTransformer(get_preset(args.preset, vocab_size=tokenizer.vocab_size))
    if stateless is None:
        stateless = build_stateless_model(rxt.config, seed=0)
    conversation = latency_conversation(args.turns)
    rows = measure_latency(stateless, rxt, tokenizer, conversation, repeats=args.repeats)
    print(format_latency_table(rows))
    if args.json is not None:
        from rxmrl.runtime import write_json

        write_json(args.json, [dataclasses.asdict(r) for r in rows])
    if args.plot is not None:
        print(f"plot: {plot_latency(rows, args.plot)}")
    return 0
