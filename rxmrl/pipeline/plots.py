"""The report's figures (matplotlib, Agg backend: files only, no display needed).

Each function takes plain numbers already read from the run directory and writes one PNG, so a plot can
never show something the JSON files do not hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rxmrl.figures import pyplot, save_figure


def plot_mrl_rewards(records: Sequence[Mapping[str, Any]], path: str | Path,
                     warm_start: Mapping[int, float] | None = None) -> Path:
    """Rollout reward per iteration, one colour per curriculum stage, with each epoch's validation reward.

    ``warm_start`` (stage -> the warm start's validation reward, from ``comparison.json``) draws the level
    each stage's validation stars must beat, so the plot answers "did MRL help" at a glance.
    """
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(9, 3.8))
    rollouts = [r for r in records if "rollout/reward" in r]
    stages = sorted({int(r["curriculum/stage"]) for r in rollouts})
    for stage in stages:
        rows = [r for r in rollouts if int(r["curriculum/stage"]) == stage]
        steps = int(rows[0]["curriculum/steps"])
        line, = axis.plot([r["step"] for r in rows], [r["rollout/reward"] for r in rows], marker=".",
                          label=f"stage {stage} ({steps} steps): rollout")
        evals = [r for r in records if f"eval/stage{stage}/reward" in r]
        if evals:
            axis.plot([r["step"] for r in evals], [r[f"eval/stage{stage}/reward"] for r in evals], marker="*",
                      markersize=12, linestyle="--", color=line.get_color(), label=f"stage {stage}: validation")
        if warm_start and stage in warm_start:
            axis.hlines(warm_start[stage], rows[0]["step"], max(r["step"] for r in rows + evals), linestyles=":",
                        colors=line.get_color(), label=f"stage {stage}: warm start (validation)")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("mean reward (0-10)")
    axis.set_title("MRL: reward per curriculum stage")
    axis.grid(alpha=0.3)
    if stages:
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside: lines stay visible
    return save_figure(figure, path)


def plot_reward_histograms(episode_rewards: Mapping[str, Sequence[float]], path: str | Path,
                           bins: int = 20) -> Path:
    """Per-episode reward distribution of each model on the same bins (0-10)."""
    plt = pyplot()
    names = list(episode_rewards)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), sharey=True, squeeze=False)
    edges = [10 * i / bins for i in range(bins + 1)]
    for axis, name in zip(axes[0], names):
        axis.hist(episode_rewards[name], bins=edges, color="tab:blue", alpha=0.8)
        axis.set_title(name)
        axis.set_xlabel("episode reward")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("episodes")
    return save_figure(figure, path)


def plot_reward_by_step(step_means: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Mean reward at each step of the episode (step 0 = first follow-up) per model."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.8))
    for name, means in step_means.items():
        axis.plot(range(len(means)), means, marker="o", label=name)
    axis.set_xlabel("step in the episode (follow-up index)")
    axis.set_ylabel("mean reward (0-10)")
    axis.set_title("Reward by step in the episode")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def plot_fact_recall(recall: Mapping[str, tuple[float | None, float | None, float | None]],
                     path: str | Path) -> Path:
    """Mean fact recall per model with its bootstrap 95% interval (missing values drawn as 0, no bar)."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.6))
    names = list(recall)
    means = [_or_zero(recall[n][0]) for n in names]
    errors = [[max(m - _or_zero(recall[n][1]), 0) for n, m in zip(names, means)],
              [max(_or_zero(recall[n][2]) - m, 0) for n, m in zip(names, means)]]
    axis.bar(names, means, yerr=errors, capsize=4, color="tab:green", alpha=0.8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("fact recall")
    axis.set_title("Fact recall (95% CI)")
    axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def _or_zero(value: float | None) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
