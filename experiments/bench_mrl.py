"""Benchmark of one MRL epoch on the issue's workload, through the trainer's real code path.

Workload: a tiny RxT (dim 128, 4 layers, 4 heads, SQA 2 query / 2 kv heads, MoE 4 experts top-2, STM 64
slots, vocab 5000), 32 episodes of 4 follow-ups in batches of 16, 10 PPO epochs. A randomly initialised
policy rarely emits [EOS], so every answer runs to ``--answer-tokens``. The embedded tokenizer, asked for
5000 tokens, has only 1178: filler tokens (``<filler-i>``, which no episode text contains) grow it to the
issue's 5000 (``--vocab-size``; 0 keeps its own size), so answers sample from 5000 ids as a trained
tokenizer's would, and both frameworks read the same tokenizer. The vocabulary size moves the comparison:
the reference framework's update takes full-vocabulary softmaxes at every padded position, ours projects
only the answer positions and normalises over their top k.

    python experiments/bench_mrl.py [--answer-tokens 80] [--ppo-epochs 10] [--threads N] [--device cpu|cuda]
        [--estimator impo [grpo rloo ...]] [--group-size 4] [--vocab-size V]
        [--reference-python /work/rxlm-venv/bin/python] [--repeats N]

``--estimator`` takes one or more of impo, grpo, rloo (``mrl.advantages.estimator``); grpo and rloo sample
``--group-size`` G answers per step (``mrl.group_size``) and build no critic, so they generate G times the
answers: compare them per answer token. ``--reference-python`` runs ``experiments/bench_mrl_rxlm.py`` with
that interpreter (the reference framework's virtualenv; rxlm is never our dependency) on the same episodes
and tokenizer, interleaved with ours (ours, theirs, ours, ... ``--repeats`` times; medians reported).
Without it the reference row is the figures measured earlier on a 2-core CPU, labelled so.

Prints per run the rollout breakdown (memory writes, generation, reference log-probs, critic, reward), then
one table: rollout s (everything before the first update pass), update s per pass, epoch s, generated answer
tokens, seconds per answer token, and reference / ours for the epoch and per answer token. On a shared
machine timings vary with the load: treat them as provisional.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# The reference framework (rxlm) on a 2-core CPU, measured earlier on this workload (impo, one answer per step).
STORED_REFERENCE = {"label": "reference (measured earlier)", "rollout_s": 8.1, "update_pass_s": 7.45,
                    "answer_tokens": None}
REFERENCE_SCRIPT = Path(__file__).with_name("bench_mrl_rxlm.py")
ESTIMATORS = ("impo", "grpo", "rloo")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--minibatch", type=int, default=32, help="(episode, step) samples per optimizer step")
    parser.add_argument("--ppo-epochs", type=int, default=10)
    parser.add_argument("--answer-tokens", type=int, default=80)
    parser.add_argument("--estimator", nargs="+", choices=ESTIMATORS, default=["impo"])
    parser.add_argument("--group-size", type=int, default=4, help="answers per step for grpo / rloo (impo: 1)")
    parser.add_argument("--vocab-size", type=int, default=5000,
                        help="vocabulary (the issue's 5000): the embedded tokenizer's 1178 tokens grown with filler "
                             "tokens; 0 keeps the tokenizer's own size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference-python", default=None,
                        help="python of the rxlm virtualenv: time the reference framework in the same run")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats (medians are reported)")
    args = parser.parse_args(argv)
    if args.group_size < 2 and any(e != "impo" for e in args.estimator):
        parser.error(f"--group-size {args.group_size}: grpo / rloo compare >= 2 answers per step")
    return args


# ---------------------------------------------------------------------------------------------- our run
def run_config(args: argparse.Namespace, estimator: str, group_size: int):
    """The bench's MRL run config: every config key the bench sets is named here, and only here."""
    from rxmrl.config import load_config
    from rxmrl.training.mrl import MrlRunConfig, StageConfig

    config = load_config(MrlRunConfig, None, [
        f"mrl.batch_episodes={args.batch}", f"mrl.minibatch_size={args.minibatch}",
        f"mrl.ppo_epochs={args.ppo_epochs}", f"mrl.max_answer_tokens={args.answer_tokens}",
        f"mrl.advantages.estimator={estimator}", f"mrl.group_size={group_size}",
        "tensorboard=false", "progress=false", "mrl.sampling.top_k=50"])
    config.stages = [StageConfig(steps=args.steps, num_episodes=args.episodes, eval_episodes=1,
                                 trainable=["memory_cross_attention", "memory_attention", "decoder", "critic"])]
    return config


def bench_tokenizer(vocab_size: int):
    """The embedded tokenizer grown to ``vocab_size`` with filler tokens (in memory; the cached file is kept)."""
    from rxmrl.data import default_tokenizer

    tokenizer = default_tokenizer(5000)
    missing = vocab_size - tokenizer.vocab_size
    if missing > 0:
        tokenizer.tokenizer.add_tokens([f"<filler-{i}>" for i in range(missing)])
    return tokenizer


def bench_model(vocab_size: int, device: str):
    from rxmrl.model import ReactiveTransformer, RxTConfig

    torch.manual_seed(0)
    config = RxTConfig(vocab_size=vocab_size, dim=128, num_layers=4, num_heads=4, query_heads=2, kv_heads=2,
                       num_experts=4, experts_per_token=2, expert_dim=256, encoder_ff_dim=384, stm_slots=64)
    return ReactiveTransformer(config).to(device)


def parameter_counts(trainer) -> dict[str, int]:
    """Actor (policy without the MLM head, which MRL never uses) and critic parameters."""
    policy, critic = trainer.model.policy, trainer.model.critic
    unused = sum(p.numel() for name, p in policy.named_parameters() if ".mlm_" in name)
    return {"actor": sum(p.numel() for p in policy.parameters()) - unused,
            "critic": sum(p.numel() for p in critic.parameters()) if critic is not None else 0}


def write_workload(trainer, tokenizer, directory: Path, steps: int) -> Path:
    """The episodes our epoch plays (texts) and our tokenizer, for the reference script."""
    tokenizer_file = directory / "tokenizer.json"
    tokenizer.tokenizer.save(str(tokenizer_file))
    train, _ = trainer.stage_data[0]
    episodes = [{"query": e.query, "answer": e.answer,
                 "interactions": [{"query": i.query, "answer": i.answer} for i in e.interactions[:steps]]}
                for e in train.episodes]
    path = directory / "workload.json"
    path.write_text(json.dumps({"tokenizer": str(tokenizer_file), "episodes": episodes}))
    return path


def time_ours(args: argparse.Namespace, estimator: str, workload_dir: Path | None = None) -> dict:
    """One epoch of our trainer; figures in the reference script's JSON keys."""
    from rxmrl.training.mrl.curriculum import epoch_batches
    from rxmrl.training.mrl.trainer import MrlTrainer

    group_size = 1 if estimator == "impo" else args.group_size
    tokenizer = bench_tokenizer(args.vocab_size)
    policy = bench_model(tokenizer.vocab_size, args.device)
    config = run_config(args, estimator, group_size)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MrlTrainer(config, policy, tokenizer, run_dir=run_dir)
        if workload_dir is not None:
            write_workload(trainer, tokenizer, workload_dir, args.steps)
        train, _ = trainer.stage_data[0]
        trainer._enter_stage(config.stages[0])
        totals: dict[str, float] = {}
        tokens = 0.0
        start = time.perf_counter()
        for indices in epoch_batches(len(train), args.batch, config.seed, 0, 0):
            record = trainer.iteration(config.stages[0], train, indices)
            tokens += record["rollout/answer_tokens"] * len(indices) * args.steps * group_size  # mean per answer
            for key, value in record.items():
                if key.startswith("time/"):
                    totals[key[5:]] = totals.get(key[5:], 0.0) + value
        epoch = time.perf_counter() - start
        counts = parameter_counts(trainer)
        trainer.close()
    return {"label": f"ours {estimator} G={group_size}", "estimator": estimator, "group_size": group_size,
            "rollout_s": epoch - totals["update"], "update_pass_s": totals["update"] / args.ppo_epochs,
            "update_s": totals["update"], "epoch_s": epoch, "answer_tokens": round(tokens),
            "answers": args.episodes * args.steps * group_size, "parameters": counts,
            "threads": torch.get_num_threads(),
            "parts": {"memory_s": totals["rollout_memory"], "generation_s": totals["rollout_generate"],
                      "reference_s": totals["rollout_reference"], "critic_s": totals["rollout_critic"],
                      "reward_s": totals["reward"]}}


# ---------------------------------------------------------------------------------------- reference run
def reference_command(python: str, args: argparse.Namespace, workload: Path) -> list[str]:
    command = [python, str(REFERENCE_SCRIPT), "--workload", str(workload), "--episodes", str(args.episodes),
               "--steps", str(args.steps), "--batch", str(args.batch), "--ppo-epochs", str(args.ppo_epochs),
               "--answer-tokens", str(args.answer_tokens)]
    return command + (["--threads", str(args.threads)] if args.threads else [])


def parse_reference_output(stdout: str) -> dict:
    """The last JSON object line the reference script printed."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            figures = json.loads(line)
            figures.setdefault("label", f"{figures.get('framework', 'reference')} impo G=1")
            return figures
    raise ValueError(f"the reference script printed no JSON line; its output ended with: {stdout[-500:]!r}")


def time_reference(python: str, args: argparse.Namespace, workload: Path) -> dict:
    completed = subprocess.run(reference_command(python, args, workload), capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the reference script failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    return parse_reference_output(completed.stdout)


# ------------------------------------------------------------------------------------------------ table
def median_figures(runs: list[dict]) -> dict:
    """Per-key medians of repeated runs (numbers only; other values from the first run)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(run[key] for run in runs)
    merged["repeats"] = len(runs)
    return merged


def with_derived(figures: dict, ppo_epochs: int, answers: int, answer_tokens: int) -> dict:
    """Fill epoch_s (rollout + passes) and an assumed token count (full-length answers) where a run lacks them."""
    out = dict(figures)
    if out.get("epoch_s") is None:
        out["epoch_s"] = out["rollout_s"] + ppo_epochs * out["update_pass_s"]
    if out.get("answer_tokens") is None:
        out["answer_tokens"], out["tokens_assumed"] = answers * answer_tokens, True
    out["s_per_token"] = out["epoch_s"] / out["answer_tokens"]
    return out


def format_table(ours: list[dict], reference: dict) -> str:
    """One row per run; ``reference / ours`` for the epoch and per generated answer token."""
    header = (f"{'run':<30} {'rollout s':>9} {'update s/pass':>13} {'epoch s':>8} {'answer tokens':>13} "
              f"{'s/answer token':>14} {'ref/ours epoch':>14} {'ref/ours per token':>18}")
    lines = [header, "-" * len(header)]
    for run in ours:
        lines.append(f"{run['label']:<30} {run['rollout_s']:>9.2f} {run['update_pass_s']:>13.2f} "
                     f"{run['epoch_s']:>8.2f} {round(run['answer_tokens']):>13d} {run['s_per_token']:>14.5f} "
                     f"{reference['epoch_s'] / run['epoch_s']:>13.1f}x "
                     f"{reference['s_per_token'] / run['s_per_token']:>17.1f}x")
    tokens = f"{'~' if reference.get('tokens_assumed') else ''}{round(reference['answer_tokens'])}"
    lines.append(f"{reference['label']:<30} {reference['rollout_s']:>9.2f} {reference['update_pass_s']:>13.2f} "
                 f"{reference['epoch_s']:>8.2f} {tokens:>13} {reference['s_per_token']:>14.5f} "
                 f"{'1.0x':>14} {'1.0x':>18}")
    if reference.get("tokens_assumed"):
        lines.append("  ~ tokens assumed: every reference answer at the length limit (not measured)")
    return "\n".join(lines)


def describe(run: dict) -> str:
    parts = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in run.get("parts", {}).items())
    params = run.get("parameters", {})
    return (f"  {run['label']}: {parts}; {round(run['answers'])} answers; parameters actor {params.get('actor', 0):,}, "
            f"critic {params.get('critic', 0):,}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ours: dict[str, list[dict]] = {e: [] for e in args.estimator}
    theirs: list[dict] = []
    with tempfile.TemporaryDirectory() as workload_dir:
        workload = Path(workload_dir) / "workload.json"
        for repeat in range(args.repeats):
            for estimator in args.estimator:
                run = time_ours(args, estimator, Path(workload_dir) if not workload.exists() else None)
                print(f"[{repeat + 1}/{args.repeats}] {json.dumps(run)}", flush=True)
                ours[estimator].append(run)
            if args.reference_python:
                run = time_reference(args.reference_python, args, workload)
                print(f"[{repeat + 1}/{args.repeats}] {json.dumps(run)}", flush=True)
                theirs.append(run)
    answers = args.episodes * args.steps
    rows = [with_derived(median_figures(runs), args.ppo_epochs, answers, args.answer_tokens) for runs in ours.values()]
    reference = with_derived(median_figures(theirs) if theirs else STORED_REFERENCE, args.ppo_epochs, answers,
                             args.answer_tokens)
    print(f"workload: {args.episodes} episodes x {args.steps} follow-ups, batches of {args.batch}, "
          f"{args.ppo_epochs} PPO epochs, minibatch {args.minibatch} samples, <= {args.answer_tokens} answer "
          f"tokens; torch threads {torch.get_num_threads()}, device {args.device}; medians of {args.repeats}")
    for run in rows + ([reference] if theirs else []):
        print(describe(run))
    if theirs:
        print("  reference deviations: " + "; ".join(reference.get("deviations", [])))
    print(format_table(rows, reference))


if __name__ == "__main__":
    main()
