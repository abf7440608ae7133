"""Agents on the same episodes: their reward ranges and the paired difference (of two, or each to a baseline).

Both agents play the same episodes in the same order, so per-episode rewards pair up; the difference of
means is estimated from the per-episode differences ``d_n = r^A_n - r^B_n`` with a percentile bootstrap over
episodes (:func:`rxmrl.evaluation.bootstrap.bootstrap_interval`), which is much tighter than comparing two
independent intervals because episode difficulty cancels. Fact recall pairs only episodes where both have a
value (episodes whose follow-ups carry facts); so do the recall of held facts (those memory was given) and the
final recall (long-range episodes only: ``None`` when no episode has a final question).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rxmrl.evaluation.reward_range import EvaluationResult, Stat, as_dict_or_none, measured


@dataclass(frozen=True)
class Comparison:
    a: EvaluationResult
    b: EvaluationResult
    reward_difference: Stat  # of d_n = reward A - reward B over episodes
    fact_recall_difference: Stat  # of the paired per-episode fact recall differences
    held_fact_recall_difference: Stat  # the same, over the facts memory holds
    final_recall_difference: Stat | None  # of the long-range final question's recall; None: no such question

    def summary(self) -> dict[str, Any]:
        return {"a": self.a.summary(), "b": self.b.summary(),
                "difference": {"reward": self.reward_difference.as_dict(),
                               "fact_recall": self.fact_recall_difference.as_dict(),
                               "held_fact_recall": self.held_fact_recall_difference.as_dict(),
                               "final_recall": as_dict_or_none(self.final_recall_difference)}}

    def final_recall_interval(self) -> str:
        """The signed final recall difference, or ``none`` when the episodes have no final question."""
        final = self.final_recall_difference
        return "none (no long-range final question)" if final is None else final.interval(signed=True)

    def format_table(self, level: float = 0.95) -> str:
        r = self.reward_difference
        return "\n".join([
            "A: " + self.a.format_table(level), "", "B: " + self.b.format_table(level), "",
            f"paired difference A - B over {self.a.num_episodes} episodes ({level:.0%} bootstrap CI):",
            f"  reward      {r.mean:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
            f"  fact recall {self.fact_recall_difference.interval(signed=True)}",
            f"  held facts  {self.held_fact_recall_difference.interval(signed=True)}",
            f"  final recall {self.final_recall_interval()}",
        ])


def compare(a: EvaluationResult, b: EvaluationResult, level: float = 0.95) -> Comparison:
    """Paired differences of two results on the same episodes; raises if the episodes cannot pair up."""
    if a.step_rewards.shape != b.step_rewards.shape:
        raise ValueError(f"cannot pair {a.agent} ({a.step_rewards.shape[0]} episodes x {a.step_rewards.shape[1]} "
                         f"steps) with {b.agent} ({b.step_rewards.shape[0]} x {b.step_rewards.shape[1]}): "
                         "expected the same episodes")
    recall = a.episode_fact_recall - b.episode_fact_recall  # NaN where either has none
    held = a.episode_held_fact_recall - b.episode_held_fact_recall
    final = a.episode_final_recall - b.episode_final_recall
    return Comparison(a, b, Stat.of(a.episode_rewards - b.episode_rewards, level),
                      Stat.of(recall, level), Stat.of(held, level), measured(final, level))


@dataclass(frozen=True)
class BaselineComparison:
    """Several agents, each paired with one baseline on the same episodes (e.g. MRL and DMPO vs the warm start)."""

    comparisons: list[Comparison]  # agent - baseline, one per agent
    names: list[str]  # what the agents and then the baseline were given as (their results all say "rxt")

    def summary(self) -> dict[str, Any]:
        return {"baseline": {"name": self.names[-1], **self.comparisons[0].b.summary()},
                "agents": [{"name": n, **c.a.summary()} for n, c in zip(self.names, self.comparisons)],
                "differences": [{"name": n, **c.summary()["difference"]} for n, c in zip(self.names, self.comparisons)]}

    def format_table(self, level: float = 0.95) -> str:
        baseline = self.comparisons[0].b
        lines = [f"baseline {self.names[-1]}: {baseline.format_table(level)}"]
        for name, c in zip(self.names, self.comparisons):
            lines += ["", f"{name}: {c.a.format_table(level)}"]
        lines += ["", f"paired differences to the baseline over {baseline.num_episodes} episodes "
                      f"({level:.0%} bootstrap CI):"]
        for name, c in zip(self.names, self.comparisons):
            lines.append(f"  {name}: reward {c.reward_difference.interval(signed=True)}, fact recall "
                         f"{c.fact_recall_difference.interval(signed=True)}, held facts "
                         f"{c.held_fact_recall_difference.interval(signed=True)}, final recall "
                         f"{c.final_recall_interval()}")
        return "\n".join(lines)


def compare_with_baseline(results: list[EvaluationResult], baseline: EvaluationResult, names: list[str],
                          level: float = 0.95) -> BaselineComparison:
    """:func:`compare` of every result with ``baseline``; ``names``: the results' and then the baseline's."""
    if len(names) != len(results) + 1:
        raise ValueError(f"{len(names)} names for {len(results)} results and a baseline")
    return BaselineComparison([compare(result, baseline, level) for result in results], list(names))
