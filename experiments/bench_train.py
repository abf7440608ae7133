"""Benchmark: stage-4 training steps/s and the MRL update pass, a baseline commit vs the working tree.

On a shared machine absolute timings drift with the load, so this bench measures *ratios within one run*: the
baseline commit is checked out in a ``git worktree`` under the temp folder and each measurement runs in a fresh
subprocess that imports ``rxmrl`` from one tree or the other (``PYTHONPATH``), interleaved (baseline, ours,
baseline, ours, ...). The table gives medians and ``ours / baseline``, with the load average beside it.

Workloads, one torch thread as the quickstart runs:

- **stage 4**: the quickstart's ``nano`` preset, batch and episodes as ``experiments/warmstart.toml`` stage 4
  (16 episodes of the saved interaction + 6 follow-ups), every group trainable (the stage after its decoder
  unfreezes, 1000 of its 1500 steps), through the shared ``Trainer.train_step`` (forward, backward, clipping,
  AdamW). A few warm-up steps are not timed.
- **MRL update**: ``experiments/bench_mrl.py``'s workload (one batch of episodes), its update pass through the
  trainer's real code path, in process CPU seconds (:func:`mrl_worker`); its rollout is reported beside it.

    python experiments/bench_train.py [--baseline main] [--repeats 3] [--steps 30] [--skip-mrl]

Both trees run this file's worker code; only ``rxmrl`` differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 3
LOSS_EVERY = 25  # the loss curve's stride (steps, warm-up included)


# ------------------------------------------------------------------------------------------- workers
def stage4_worker(steps: int, config_file: Path) -> dict:
    """Seconds per stage-4 training step of the imported ``rxmrl`` (every group trainable), wall and CPU."""
    import torch

    from rxmrl.config import load_config
    from rxmrl.training.distributed import init_distributed
    from rxmrl.training.loop import RunRecord
    from rxmrl.training.rng import seed_everything
    from rxmrl.training.stages.batching import pad_episodes
    from rxmrl.training.stages.common import make_trainer
    from rxmrl.training.stages.memory_aware import memory_aware_step
    from rxmrl.training.supervised import SupervisedConfig, load_tokenizer, model_preset, stage_rows

    torch.set_num_threads(1)
    episodes = (steps + WARMUP_STEPS) * 16
    config = load_config(SupervisedConfig, config_file, [f"stage4.num_episodes={episodes}",
                                                         "stage4.loop.progress=false",
                                                         "stage4.loop.tensorboard=false"])
    tokenizer = load_tokenizer(config.data)
    rows = stage_rows(config, 4, tokenizer)
    seed_everything(config.seed)
    from rxmrl.model import ReactiveTransformer

    model = ReactiveTransformer(model_preset(config.model.preset, {"vocab_size": tokenizer.vocab_size}))
    settings = config.stage4

    def step_fn(m, batch):
        return memory_aware_step(m, batch, settings)

    trainer = make_trainer(model, step_fn, rows, pad_episodes, settings, init_distributed(), RunRecord(desc="bench"))
    losses = [trainer.train_step()["loss"] for _ in range(WARMUP_STEPS)]
    start, cpu_start = time.perf_counter(), time.process_time()
    losses += [trainer.train_step()["loss"] for _ in range(steps)]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    trainer.close()
    return {"stage4_s_per_step": seconds / steps, "stage4_steps_per_s": steps / seconds,
            "stage4_cpu_s_per_step": cpu_seconds / steps, "stage4_last_loss": losses[-1],
            "stage4_losses": losses[LOSS_EVERY - 1::LOSS_EVERY], "threads": torch.get_num_threads()}


def mrl_worker(ppo_epochs: int) -> dict:
    """The MRL update pass (and rollout) of ``bench_mrl.py``'s workload, one batch of 16 episodes, in CPU seconds.

    The trainer times its phases with ``time.perf_counter``; this process exists only to measure, so that clock
    is the process CPU clock here (with one thread, the time the pass computed, whatever else held the cores).
    """
    time.perf_counter = time.process_time  # before rxmrl's modules are imported: `from time import` sees it too
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_mrl
    import torch

    torch.set_num_threads(1)

    args = bench_mrl.parse_args(["--episodes", "16", "--ppo-epochs", str(ppo_epochs), "--threads", "1"])
    run = bench_mrl.time_ours(args, "impo")
    return {"mrl_update_cpu_s": run["update_pass_s"], "mrl_rollout_cpu_s": run["rollout_s"]}


def worker_main(args: argparse.Namespace) -> None:
    figures = stage4_worker(args.steps, Path(args.config)) if args.worker == "stage4" else mrl_worker(args.ppo_epochs)
    import rxmrl

    print(json.dumps({"rxmrl": str(Path(rxmrl.__file__).parents[1]), **figures}), flush=True)


# ------------------------------------------------------------------------------------------- driver
def git(*command: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *command], check=True, capture_output=True,
                          text=True).stdout.strip()


def run_worker(tree: Path, workload: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh interpreter that imports ``rxmrl`` from ``tree``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", workload, "--steps", str(args.steps),
               "--ppo-epochs", str(args.ppo_epochs), "--config", str(REPO / args.config)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        raise SystemExit(f"error: the {workload} worker on {tree} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(figures["rxmrl"]).resolve() != tree.resolve():
        raise SystemExit(f"error: the worker for {tree} imported rxmrl from {figures['rxmrl']}")
    return figures


def measure(trees: dict[str, Path], args: argparse.Namespace) -> dict[str, list[dict]]:
    """Interleaved repeats: every tree once per round, stage 4 then the MRL update."""
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    workloads = ["stage4"] + ([] if args.skip_mrl else ["mrl"])
    for repeat in range(args.repeats):
        for name, tree in trees.items():
            figures = {"load": os.getloadavg()[0]}
            for workload in workloads:
                figures |= run_worker(tree, workload, args)
            print(f"[{repeat + 1}/{args.repeats}] {name}: {json.dumps(figures)}", flush=True)
            runs[name].append(figures)
    return runs


# Process CPU seconds sit beside wall seconds: with one thread they leave out the time other jobs held the core.
ROWS = [("stage4_steps_per_s", "stage-4 steps/s", True), ("stage4_s_per_step", "stage-4 s/step", False),
        ("stage4_cpu_s_per_step", "stage-4 CPU s/step", False), ("mrl_update_cpu_s", "MRL update CPU s/pass", False),
        ("mrl_rollout_cpu_s", "MRL rollout CPU s", False)]


def format_table(runs: dict[str, list[dict]]) -> str:
    """Medians per tree and the speed-up of ours over the baseline (> 1: ours is faster)."""
    (base_name, base), (ours_name, ours) = runs.items()
    header = f"{'figure':<22}{base_name:>14}{ours_name:>14}{'speed-up':>10}   ours per repeat"
    lines = [header, "-" * len(header)]
    for key, label, higher_is_better in ROWS:
        if key not in base[0]:
            continue
        b, o = statistics.median(r[key] for r in base), statistics.median(r[key] for r in ours)
        ratio = o / b if higher_is_better else b / o
        each = " ".join(f"{r[key]:.3f}" for r in ours)
        lines.append(f"{label:<22}{b:>14.3f}{o:>14.3f}{ratio:>9.2f}x   {each}")
    b, o = base[0]["stage4_last_loss"], ours[0]["stage4_last_loss"]  # same seed and data: equal if bit-identical
    lines.append(f"{'stage-4 last loss':<22}{b:>14.6f}{o:>14.6f}{'(same)' if b == o else f'{o - b:+.1e}':>10}")
    loads = [r["load"] for rs in runs.values() for r in rs]
    lines.append(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} CPUs")
    return "\n".join(lines + loss_curve(base[0]["stage4_losses"], ours[0]["stage4_losses"]))


def loss_curve(base: list[float], ours: list[float]) -> list[str]:
    """Both trees' training loss every ``LOSS_EVERY`` steps of the first repeat (same seed, same batches)."""
    if not base:
        return []
    lines = [f"stage-4 loss (first repeat): {'step':>6}{'baseline':>12}{'ours':>12}{'ours - base':>13}"]
    for i, (b, o) in enumerate(zip(base, ours, strict=True)):
        lines.append(f"{'':<29}{(i + 1) * LOSS_EVERY:>6}{b:>12.6f}{o:>12.6f}{o - b:>+13.2e}")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians are reported)")
    parser.add_argument("--steps", type=int, default=30, help="timed stage-4 steps per measurement")
    parser.add_argument("--ppo-epochs", type=int, default=3, help="MRL update passes per measurement")
    parser.add_argument("--config", default="experiments/warmstart.toml", help="supervised config (stage 4)")
    parser.add_argument("--skip-mrl", action="store_true", help="time stage 4 only")
    parser.add_argument("--worker", choices=["stage4", "mrl"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("repeats", "steps", "ppo_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 1")
    if args.worker is None and not (REPO / args.config).is_file():
        parser.error(f"--config {args.config}: no such file under {REPO}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    try:
        commit = git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")
    except subprocess.CalledProcessError:
        print(f"error: --baseline {args.baseline!r} is not a commit of {REPO}", file=sys.stderr)
        raise SystemExit(2) from None
    with tempfile.TemporaryDirectory(prefix="bench_train-") as scratch:
        worktree = Path(scratch) / "baseline"
        git("worktree", "add", "--detach", str(worktree), commit)
        try:
            print(f"baseline {args.baseline} = {commit[:10]}, ours = working tree of {REPO} "
                  f"(HEAD {git('rev-parse', '--short', 'HEAD')}); {args.repeats} interleaved repeats, "
                  f"{args.steps} stage-4 steps, {args.ppo_epochs} MRL update passes each", flush=True)
            runs = measure({f"baseline {commit[:7]}": worktree, "ours": REPO}, args)
        finally:
            git("worktree", "remove", "--force", str(worktree))
    print(format_table(runs))


if __name__ == "__main__":
    main()
