"""Training methods side by side on one warm start: MRL estimators and DMPO, each over its seeds.

    python experiments/compare_methods.py --warm-start DIR impo=RUN_A,RUN_B dmpo=RUN_C,RUN_D [--episodes 64]

Each RUN is the run directory of ``rxmrl train mrl`` or ``rxmrl train dmpo`` from that warm start, on the same
curriculum (the same episodes and epochs). Per run, one row of:

- retention on ``steps-8`` validation (:mod:`rxmrl.evaluation.retention`: the reference conversation in memory,
  greedy answers): fact recall, the memory gap (memory - reset memory) and the gain over the warm start, with
  paired 95% bootstrap intervals over the same episodes;
- the last curriculum stage's validation rewards from the run's ``comparison.json``: every ``[validation]``
  preset (e.g. ``memory`` and ``default``), and its difference to the warm start with its interval;
- training wall time per iteration and in total (rollout + reward + update, evaluations left out).

Then one line per method: the mean over its seeds of each figure. Markdown on stdout.

Measured on 2026-12-02 (2-core CPU, two runs side by side at one torch thread each). Warm start: the
quickstart's seed-0 stage 4 (it reads memory at one thread). Every run: experiments/mrl_quickstart.toml (three
stages of 256 / 256 / 128 episodes, one epoch each, 40 iterations, the `memory` preset, its learning rates),
`seed` 0 or 1; impo with a critic, grpo / rloo with `mrl.group_size = 4`, dmpo with `mrl.group_size = 2` plus the
reference answer and its stages' teacher forcing off (DMPO writes its accepted answer). The rewards are each
run's own last-stage validation episodes (a seed draws its own), paired with the warm start on them:

    run       fact recall  memory gap               gain over warm start     default (diff.)          memory (diff.)           s/iter  training s  run s
    warm st.  0.321        +0.253 [+0.220, +0.291]  -                        -                        -                        -       -           -
    impo #0   0.327        +0.265 [+0.232, +0.301]  +0.006 [-0.015, +0.027]  +0.168 [+0.104, +0.236]  +0.197 [+0.074, +0.329]  2.66    107         383
    impo #1   0.328        +0.237 [+0.201, +0.274]  +0.007 [-0.018, +0.032]  +0.130 [+0.058, +0.205]  +0.157 [-0.000, +0.320]  2.51    100         381
    grpo #0   0.333        +0.248 [+0.218, +0.282]  +0.012 [-0.015, +0.037]  +0.398 [+0.322, +0.473]  +0.379 [+0.219, +0.539]  5.99    240         474
    grpo #1   0.345        +0.249 [+0.216, +0.283]  +0.023 [-0.005, +0.054]  +0.281 [+0.207, +0.357]  -0.019 [-0.171, +0.130]  6.22    249         512
    rloo #0   0.320        +0.243 [+0.210, +0.278]  -0.001 [-0.022, +0.023]  +0.219 [+0.150, +0.290]  +0.292 [+0.149, +0.445]  6.34    254         517
    rloo #1   0.332        +0.250 [+0.218, +0.283]  +0.011 [-0.014, +0.035]  +0.211 [+0.119, +0.308]  +0.178 [+0.005, +0.354]  6.52    261         499
    dmpo #0   0.337        +0.253 [+0.216, +0.291]  +0.016 [-0.005, +0.034]  +0.116 [+0.057, +0.177]  +0.184 [+0.065, +0.308]  4.85    194         474
    dmpo #1   0.340        +0.253 [+0.224, +0.285]  +0.019 [-0.004, +0.041]  +0.133 [+0.065, +0.206]  -0.053 [-0.198, +0.099]  3.51    140         410

No method raises recall beyond the noise of one seed (every interval of the gain holds 0; means +0.005 to
+0.018), and every one keeps the memory gap (+0.25). grpo raises the `default` reward most (+0.34 on average)
at 2.4x impo's time per iteration; impo stays the quickstart's estimator, the cheapest of equals on recall.
DMPO variants, seed 0 only: ten times the learning rates -0.021 [-0.062, +0.016] (memory gap +0.209), ten
times on the memory components only +0.009 [-0.016, +0.033], `memory_credit = 2` +0.003 [-0.018, +0.023].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("methods", nargs="+", metavar="NAME=RUN[,RUN...]", help="a method and its seeds' run dirs")
    parser.add_argument("--warm-start", required=True, help="the model dir every run started from")
    parser.add_argument("--config", default="steps-8")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    methods = {}
    for spec in args.methods:
        name, _, runs = spec.partition("=")
        if not runs:
            parser.error(f"{spec!r}: expected NAME=RUN[,RUN...]")
        methods[name] = [Path(run) for run in runs.split(",")]
    for runs in methods.values():
        for run in runs:
            if not (run / "comparison.json").is_file() or not (run / "final").is_dir():
                parser.error(f"{run}: not a finished run directory (comparison.json and final/)")

    import torch

    from rxmrl.envs import BatchedMrlEnv
    from rxmrl.evaluation.retention import measure_retention
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = RxTokenizer.load(args.warm_start)
    steps = int(args.config.split("-")[1])
    env = BatchedMrlEnv(32, "embedded", steps, "validation", config=args.config, num_episodes=args.episodes,
                        reward="default", similarity="random-embedding", tokenizer=tokenizer, order="sequential",
                        seed=0, teacher_forcing=True)
    models = {"warm start": ReactiveTransformer.from_pretrained(args.warm_start)}
    labels = {}
    for name, runs in methods.items():
        for seed, run in enumerate(runs):
            labels[run] = f"{name} #{seed}"
            models[labels[run]] = ReactiveTransformer.from_pretrained(run / "final")
    retention = measure_retention(models, env, args.episodes, baseline="warm start")

    first = json.loads((next(iter(labels)) / "comparison.json").read_text())
    presets = list(first["stages"][-1]["differences"])
    print(f"Retention: {args.config} validation, {args.episodes} episodes, reference conversation in memory, greedy. "
          f"Rewards: the last stage's validation ({first['validation_similarity']}), run minus warm start.\n")
    header = ["run", "fact recall", "memory gap", "gain over warm start",
              *(f"{p[len('reward/'):]} reward (diff.)" for p in presets), "s / iteration", "training s"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    base = retention.with_memory["warm start"]
    last = first["stages"][-1]["warm_start"]
    print(f"| warm start | {base.recall().mean:.3f} | {retention.gap['warm start'].fact_recall_difference.interval(signed=True)} | – | "
          + " | ".join(f"{last[p]:.3f}" for p in presets) + " | – | – |")
    means: dict[str, list[list[float]]] = {}
    for run, label in labels.items():
        comparison = json.loads((run / "comparison.json").read_text())
        row = comparison["stages"][-1]
        seconds = sum(comparison["timings"].values())
        recall = retention.with_memory[label].recall().mean
        gap, gain = retention.gap[label].fact_recall_difference, retention.gain[label].fact_recall_difference
        diffs = [row["differences"][p] for p in presets]
        print(f"| {label} | {recall:.3f} | {gap.interval(signed=True)} | {gain.interval(signed=True)} | "
              + " | ".join(f"{row['mrl'][p]:.3f} ({d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}])"
                           for p, d in zip(presets, diffs))
              + f" | {seconds / comparison['iterations']:.2f} | {seconds:.0f} |")
        values = [recall, gap.mean, gain.mean, *(d["mean"] for d in diffs), seconds / comparison["iterations"],
                  seconds]
        means.setdefault(label.split(" #")[0], []).append(values)
    print("\nMean over seeds:\n")
    print("| method | seeds | fact recall | memory gap | gain over warm start | "
          + " | ".join(f"{p[len('reward/'):]} diff." for p in presets) + " | s / iteration | training s |")
    print("|---|---:|" + "---:|" * (len(presets) + 5))
    for name, rows in means.items():
        mean = [sum(column) / len(column) for column in zip(*rows)]
        print(f"| {name} | {len(rows)} | {mean[0]:.3f} | {mean[1]:+.3f} | {mean[2]:+.3f} | "
              + " | ".join(f"{v:+.3f}" for v in mean[3:3 + len(presets)]) + f" | {mean[-2]:.2f} | {mean[-1]:.0f} |")


if __name__ == "__main__":
    main()
