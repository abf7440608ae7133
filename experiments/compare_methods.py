"""Training methods side by side on one warm start: MRL estimators and DMPO, each over its seeds.

    python experiments/compare_methods.py --warm-start DIR impo=RUN_A,RUN_B dmpo=RUN_C,RUN_D [--episodes 64]
        [--temperature T [--top-k K]]

Each RUN is the run directory of ``rxmrl train mrl`` or ``rxmrl train dmpo`` from that warm start, on the same
curriculum (the same episodes and epochs). Per run, one row of:

- retention on ``steps-8`` validation (:mod:`rxmrl.evaluation.retention`: the reference conversation in memory,
  greedy answers, or sampled with ``--temperature``): fact recall, the memory gap (memory - reset memory) and
  the gain over the warm start, with paired 95% bootstrap intervals over the same episodes;
- the last curriculum stage's validation rewards from the run's ``comparison.json``: every ``[validation]``
  preset (e.g. ``memory`` and ``default``), and its difference to the warm start with its interval;
- training wall time per iteration and in total (rollout + reward + update, evaluations left out).

Then one line per method: the mean over its seeds of each figure. Markdown on stdout.

Measured on 2026-12-02 (2-core AMD EPYC, two runs side by side at one torch thread each). Warm start: the
quickstart's seed-0 stage 4 (memory cross-attention alone for its first 500 steps: it reads memory). Every
run: experiments/mrl_quickstart.toml (three stages of 256 / 256 / 128 episodes, one epoch each, 40 iterations,
the `memory` preset, its learning rates), `seed` 0 or 1; impo with a critic (group_size 1, "critic" trainable,
its lr 3e-4), grpo / rloo with `mrl.group_size = 4`, dmpo with `mrl.group_size = 2` plus the reference answer
and its stages' teacher forcing off (DMPO writes its accepted answer). The rewards are each run's own
last-stage validation episodes (a seed draws its own), paired with the warm start on them:

    run       fact recall  memory gap               gain over warm start     default (diff.)          memory (diff.)           s/iter  training s
    warm st.  0.601        +0.511 [+0.475, +0.549]  -                        -                        -                        -       -
    impo #0   0.594        +0.521 [+0.483, +0.559]  -0.007 [-0.027, +0.014]  +0.039 [-0.023, +0.101]  +0.120 [-0.002, +0.249]  1.29    52
    impo #1   0.593        +0.504 [+0.463, +0.547]  -0.008 [-0.021, +0.007]  +0.152 [+0.076, +0.230]  +0.284 [+0.151, +0.416]  1.40    56
    grpo #0   0.603        +0.522 [+0.484, +0.560]  +0.002 [-0.016, +0.020]  +0.241 [+0.164, +0.319]  +0.177 [+0.047, +0.316]  3.46    138
    grpo #1   0.596        +0.505 [+0.467, +0.543]  -0.005 [-0.022, +0.013]  +0.297 [+0.222, +0.372]  +0.241 [+0.083, +0.406]  3.21    128
    rloo #0   0.597        +0.514 [+0.477, +0.552]  -0.004 [-0.022, +0.014]  +0.275 [+0.195, +0.356]  +0.308 [+0.184, +0.438]  3.27    131
    rloo #1   0.593        +0.511 [+0.473, +0.548]  -0.008 [-0.027, +0.011]  +0.234 [+0.157, +0.312]  +0.306 [+0.166, +0.450]  3.37    135
    dmpo #0   0.604        +0.513 [+0.475, +0.551]  +0.003 [-0.014, +0.020]  +0.202 [+0.133, +0.271]  +0.265 [+0.161, +0.374]  1.68    67
    dmpo #1   0.604        +0.504 [+0.465, +0.542]  +0.003 [-0.010, +0.016]  +0.195 [+0.124, +0.268]  +0.258 [+0.163, +0.357]  1.47    59

No method moves recall (every interval of the gain holds 0; means -0.007 to +0.003) and every one keeps the
memory gap (+0.51). The `default` reward rises most under grpo (+0.27 on average) and rloo (+0.25), least
under impo (+0.10; at seed 0 its first stage falls, -0.088 [-0.156, -0.021]); grpo and rloo take 2.5x impo's
time per iteration. grpo is the quickstart's estimator: the largest `default` gain, never below the warm
start at any stage of either seed. On the earlier warm start (stage 4 training the whole decoder from step 0,
another CPU; recall 0.321, memory gap +0.253) the ranking on `default` was the same (grpo +0.34, impo +0.15).
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
    parser.add_argument("--temperature", type=float, default=None,
                        help="sample the retention answers at this temperature (default: greedy)")
    parser.add_argument("--top-k", type=int, default=None, help="with --temperature: keep the k likeliest tokens")
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
    from rxmrl.model import GREEDY, ReactiveTransformer, SamplingConfig
    from rxmrl.model.sampling import describe_sampling
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
    sampling = (GREEDY if args.temperature is None
                else SamplingConfig(temperature=args.temperature, top_k=args.top_k))
    retention = measure_retention(models, env, args.episodes, baseline="warm start", sampling=sampling)

    first = json.loads((next(iter(labels)) / "comparison.json").read_text())
    presets = list(first["stages"][-1]["differences"])
    print(f"Retention: {args.config} validation, {args.episodes} episodes, reference conversation in memory, {describe_sampling(sampling)}. "
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
