"""The reward audit's figure: one reward's mean per case, with its interval (``rxmrl reward audit``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rxmrl.figures import pyplot, save_figure


def plot_reward_audit(summary: Mapping[str, Any], path: str | Path) -> Path:
    """One reward's audit: mean reward per case with its 95% interval, the model cases in their own colour."""
    plt = pyplot()
    cases = summary["cases"]
    names = list(cases)
    means = [cases[n]["reward"]["mean"] for n in names]
    low = [m - cases[n]["reward"]["ci_low"] for n, m in zip(names, means)]
    high = [cases[n]["reward"]["ci_high"] - m for n, m in zip(names, means)]
    scripted = {"oracle", "wrong_fact", "constant", "previous", "history_dump", "empty", "other_episode"}
    colours = ["tab:blue" if n in scripted else "tab:orange" for n in names]
    figure, axis = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.4))
    axis.barh(range(len(names)), means, xerr=[low, high], color=colours, alpha=0.85, capsize=3)
    axis.set_yticks(range(len(names)), names)
    axis.invert_yaxis()
    axis.set_xlim(0, 10)
    axis.set_xlabel("mean reward per episode (0-10), 95% bootstrap interval")
    axis.set_title(f"reward audit: {summary['reward']}")
    axis.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)
