"""A seed study's verdict: which runs read their memory, and the distribution of their recall.

A run *reads memory* when its retention gap (recall with the reference conversation in memory minus recall
with a memory that is never written, paired over the same episodes) is large and certainly positive::

    reads(run) = gap.mean >= threshold  and  gap.ci_low > 0        (threshold 0.30 by default)

A gap of 0.30 with an interval that crosses 0 is noise that happened to be large, so it does not count. The
study reports the share of runs that read memory and the median and worst recall: a recipe is judged by its
distribution of runs, not by its best one.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

READING_GAP = 0.30


def reads_memory(gap: Mapping[str, float], threshold: float = READING_GAP) -> bool:
    """Whether a run's retention gap ``{"mean", "ci_low", ...}`` says it reads memory (module docstring)."""
    return gap["mean"] >= threshold and gap["ci_low"] > 0


def summarise(records: Sequence[Mapping[str, Any]], threshold: float = READING_GAP) -> dict[str, Any]:
    """``summary.json``: every run with its verdict, the share that reads memory, median and worst recall."""
    runs = [{**record, "reads_memory": reads_memory(record["gap"], threshold)} for record in records]
    recalls = [run["recall"]["mean"] for run in runs]
    seconds = [run["stage4_seconds"] for run in runs if run.get("stage4_seconds") is not None]
    reading = sum(run["reads_memory"] for run in runs)
    return {"runs": runs, "num_runs": len(runs), "reading": reading,
            "share_reading": reading / len(runs) if runs else float("nan"),
            "threshold": threshold,
            "median_recall": statistics.median(recalls) if recalls else float("nan"),
            "worst_recall": min(recalls, default=float("nan")),
            "median_gap": statistics.median(run["gap"]["mean"] for run in runs) if runs else float("nan"),
            "median_stage4_seconds": statistics.median(seconds) if seconds else None}


def _interval(stat: Mapping[str, float], signed: bool = False) -> str:
    f = "+.3f" if signed else ".3f"
    return f"{stat['mean']:{f}} [{stat['ci_low']:{f}}, {stat['ci_high']:{f}}]"


def format_table(summary: Mapping[str, Any]) -> str:
    """One line per run (recall with and without memory, the gap, the verdict, the stage-4 probe and wall
    time), then the share reading memory and the median and worst recall."""
    header = (f"{'run':<18}{'recall [95% CI]':>24}{'reset memory':>14}{'gap [95% CI]':>27}{'reads':>7}"
              f"{'probe fact acc':>17}{'stage 4':>9}")
    lines = [header]
    for run in summary["runs"]:
        probe = run.get("probe") or {}
        fact = (f"{probe['fact_acc_with_memory']:.3f}/{probe['fact_acc_reset_memory']:.3f}"
                if "fact_acc_with_memory" in probe else "-")
        seconds = f"{run['stage4_seconds']:.0f} s" if run.get("stage4_seconds") is not None else "-"
        lines.append(f"{run['name']:<18}{_interval(run['recall']):>24}{run['reset_recall']['mean']:>14.3f}"
                     f"{_interval(run['gap'], signed=True):>27}{'yes' if run['reads_memory'] else 'no':>7}"
                     f"{fact:>17}{seconds:>9}")
    seconds = summary.get("median_stage4_seconds")
    lines += ["", f"read memory (gap >= {summary['threshold']:.2f}, interval above 0): {summary['reading']} of "
                  f"{summary['num_runs']} runs ({summary['share_reading']:.0%}); recall median "
                  f"{summary['median_recall']:.3f}, worst {summary['worst_recall']:.3f}; gap median "
                  f"{summary['median_gap']:+.3f}" + (f"; stage 4 median {seconds:.0f} s" if seconds else "")]
    return "\n".join(lines)


def plot_recall(summary: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Recall per run with memory (with its interval) and with a reset memory; runs that read memory in
    colour, the others grey."""
    from rxmrl.figures import pyplot, save_figure

    plt = pyplot()
    runs = summary["runs"]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.6 * len(runs) + 2), 3.8))
    for x, run in enumerate(runs):
        recall, colour = run["recall"], ("tab:blue" if run["reads_memory"] else "tab:gray")
        axis.errorbar([x], [recall["mean"]], yerr=[[recall["mean"] - recall["ci_low"]],
                                                   [recall["ci_high"] - recall["mean"]]],
                      fmt="o", color=colour, capsize=3, label="with memory" if x == 0 else None)
        axis.plot([x], [run["reset_recall"]["mean"]], "x", color="tab:red", label="reset memory" if x == 0 else None)
    axis.set_xticks(range(len(runs)), [run["name"] for run in runs], rotation=45, ha="right", fontsize=8)
    axis.set_ylabel("retention fact recall")
    axis.set_ylim(0, 1)
    axis.set_title(title or f"{summary['reading']} of {summary['num_runs']} runs read memory")
    axis.legend(loc="upper right", fontsize=8)
    return save_figure(figure, path)
