"""The reward-range evaluation: an agent over N episodes of a split, summarised per episode and per step.

The per-episode reward is the mean of its step rewards (0-10). The table reports its mean with a bootstrap
95% interval over episodes, its min and max, the same per step, and the fact recall of the answers (the
fraction of each follow-up's facts stated; steps without facts in the data are left out). Long-range episodes
also report their *final recall* on its own: the recall of the final question, which asks about the first
interaction after every distractor turn, and which the episode mean averages with those turns. Cumulative
episodes have no such question; their final recall is absent (``None``), not a number.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rxmrl.envs.agents import Agent
from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.evaluation.bootstrap import bootstrap_interval


@dataclass(frozen=True)
class Stat:
    """Mean with its bootstrap interval, and the range, of one quantity over episodes."""

    mean: float
    ci_low: float
    ci_high: float
    min: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray, level: float = 0.95, seed: int = 0) -> Stat:
        values = np.asarray(values, dtype=np.float64)
        kept = values[~np.isnan(values)]
        if kept.size == 0:
            return cls(*(math.nan,) * 5)
        low, high = bootstrap_interval(kept, level, seed=seed)
        return cls(float(kept.mean()), low, high, float(kept.min()), float(kept.max()))

    def interval(self, digits: int = 3, signed: bool = False) -> str:
        """``mean [low, high]`` (``+`` signs for differences), or ``n/a`` when nothing was measured."""
        if math.isnan(self.mean):
            return "n/a"
        f = f"{'+' if signed else ''}.{digits}f"
        return f"{self.mean:{f}} [{self.ci_low:{f}}, {self.ci_high:{f}}]"

    def as_dict(self) -> dict[str, float]:
        """Plain numbers for JSON: mean, ci_low, ci_high, min, max."""
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "min": self.min, "max": self.max}


def measured(values: np.ndarray, level: float = 0.95) -> Stat | None:
    """:meth:`Stat.of` the values, or ``None`` when all are NaN: a quantity these episodes do not have (the
    final recall of cumulative episodes) is absent, never a number."""
    values = np.asarray(values, dtype=np.float64)
    return Stat.of(values, level) if (~np.isnan(values)).any() else None


def as_dict_or_none(stat: Stat | None) -> dict[str, float] | None:
    return None if stat is None else stat.as_dict()


@dataclass
class EvaluationResult:
    """Per-step rewards, fact recall and reward components of every episode, with what produced them."""

    agent: str
    step_rewards: np.ndarray  # (N, steps)
    fact_recall: np.ndarray  # (N, steps), NaN where the data has no facts
    held_fact_recall: np.ndarray  # (N, steps), recall of the facts memory holds (rxmrl.rewards.held_fact_recall)
    final_recall: np.ndarray  # (N, steps), fact recall of the long-range final question; NaN on every other step
    components: dict[str, np.ndarray]  # name -> (N, steps)
    modes: list[list[str]]  # modes[n][i]
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)  # config, split, reward, similarity, ...

    @property
    def num_episodes(self) -> int:
        return self.step_rewards.shape[0]

    @property
    def episode_rewards(self) -> np.ndarray:
        """``(N,)`` mean reward over each episode's steps."""
        return self.step_rewards.mean(axis=1)

    @property
    def episode_fact_recall(self) -> np.ndarray:
        """``(N,)`` mean fact recall over each episode's steps that have facts (NaN if none do)."""
        return episode_means(self.fact_recall)

    @property
    def episode_held_fact_recall(self) -> np.ndarray:
        """``(N,)`` mean recall of held facts over each episode's steps where memory holds some (NaN: none)."""
        return episode_means(self.held_fact_recall)

    @property
    def episode_final_recall(self) -> np.ndarray:
        """``(N,)`` recall of each episode's long-range final question (NaN: a cumulative episode has none)."""
        return episode_means(self.final_recall)

    @property
    def episodes_per_second(self) -> float:
        return self.num_episodes / self.seconds if self.seconds > 0 else math.inf

    def component_mean(self, name: str) -> float:
        """Mean of a reward component over the steps that have it (``NaN`` rows: the term was absent)."""
        values = np.asarray(self.components[name], dtype=np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    def reward(self, level: float = 0.95) -> Stat:
        return Stat.of(self.episode_rewards, level)

    def step_reward(self, step: int, level: float = 0.95) -> Stat:
        return Stat.of(self.step_rewards[:, step], level)

    def recall(self, level: float = 0.95) -> Stat:
        return Stat.of(self.episode_fact_recall, level)

    def held_recall(self, level: float = 0.95) -> Stat:
        return Stat.of(self.episode_held_fact_recall, level)

    def final_question_recall(self, level: float = 0.95) -> Stat | None:
        """Final recall over the episodes that have a long-range final question; ``None`` when none has."""
        return measured(self.episode_final_recall, level)

    def summary(self, level: float = 0.95) -> dict[str, Any]:
        """Plain numbers for logs and reports (``json.dumps``-able)."""
        return {
            "agent": self.agent, **self.meta, "episodes": self.num_episodes, "seconds": self.seconds,
            "episodes_per_second": self.episodes_per_second, "reward": self.reward(level).as_dict(),
            "fact_recall": self.recall(level).as_dict(), "held_fact_recall": self.held_recall(level).as_dict(),
            "final_recall": as_dict_or_none(self.final_question_recall(level)),
            "steps": [{"step": i, "reward": self.step_reward(i, level).as_dict(),
                       "fact_recall": Stat.of(self.fact_recall[:, i], level).as_dict(),
                       "held_fact_recall": Stat.of(self.held_fact_recall[:, i], level).as_dict(),
                       "modes": sorted({m[i] for m in self.modes})} for i in range(self.step_rewards.shape[1])],
            "components": {k: self.component_mean(k) for k in self.components},
        }

    def format_table(self, level: float = 0.95) -> str:
        """Mean [CI] / min / max of the reward and fact recall, per episode and per step."""
        pct = f"{level:.0%}"
        meta = " · ".join(str(v) for v in self.meta.values())
        lines = [f"agent {self.agent} · {meta} · {self.num_episodes} episodes · "
                 f"{self.episodes_per_second:.1f} episodes/s",
                 f"{'':<14}{'reward mean [' + pct + ' CI]':>28}{'min':>7}{'max':>7}"
                 f"{'fact recall [' + pct + ' CI]':>30}{'held facts [' + pct + ' CI]':>30}"]

        def line(label: str, reward: Stat, recall: Stat, held: Stat) -> str:
            return (f"{label:<14}{reward.interval(2):>28}"
                    f"{reward.min:>7.2f}{reward.max:>7.2f}{recall.interval():>30}{held.interval():>30}")

        lines.append(line("episode", self.reward(level), self.recall(level), self.held_recall(level)))
        for i in range(self.step_rewards.shape[1]):
            modes = "/".join(sorted({m[i] for m in self.modes}))
            label = f"step {i}" + ("" if modes == "standard" else f" ({modes[:5]})")
            lines.append(line(label, self.step_reward(i, level), Stat.of(self.fact_recall[:, i], level),
                              Stat.of(self.held_fact_recall[:, i], level)))
        lines.append("held facts: those whose source interaction, as written into memory, states them")
        lines.append(self.final_recall_line(level))
        return "\n".join(lines)

    def final_recall_line(self, level: float = 0.95) -> str:
        """The final recall with its interval, or a line saying these episodes have no final question."""
        final = self.final_question_recall(level)
        if final is None:
            return "final recall: none (no long-range episode: cumulative episodes have no final question)"
        count = int((~np.isnan(self.episode_final_recall)).sum())
        return (f"final recall [{level:.0%} CI] {final.interval()}: the long-range final question about the first "
                f"interaction, {count} episodes")


def episode_means(per_step: np.ndarray) -> np.ndarray:
    """``(N,)`` mean of each row over its non-NaN steps (NaN where a row has none)."""
    counts = (~np.isnan(per_step)).sum(axis=1)
    return np.where(counts > 0, np.nansum(per_step, axis=1) / np.maximum(counts, 1), np.nan)


def evaluate(agent: Agent, env: BatchedMrlEnv, num_episodes: int | None = None, *, seed: int | None = 0,
             meta: dict[str, Any] | None = None) -> EvaluationResult:
    """Plays ``num_episodes`` (default: every episode of the env's pools) in batches of ``env.batch_size``.

    The agent's batched form answers; what the env says to write goes into its memory after every step but
    the last. ``seed`` seeds the env's episode order on the first reset (``order="sequential"`` envs play
    rows in order).
    """
    total = len(env.sampler) if num_episodes is None else num_episodes
    if total < 1:
        raise ValueError(f"num_episodes={num_episodes}: expected at least 1 episode")
    rewards, recalls, held, finals, modes, components = [], [], [], [], [], {}
    started = time.perf_counter()
    played = 0
    while played < total:
        count = min(env.batch_size, total - played)
        start = env.reset(seed=seed if played == 0 else None, options={"batch_size": count})
        agent.begin_batch(start)
        query, batch_rewards, batch_recall, batch_held, batch_final, batch_components = start.query, [], [], [], [], {}
        while True:
            answers = agent.answer_batch(query)
            out = env.step(answers)
            batch_rewards.append(out.rewards.cpu().numpy())
            batch_recall.append(out.fact_recall.cpu().numpy())
            batch_held.append(out.held_fact_recall.cpu().numpy())
            batch_final.append(out.final_recall.cpu().numpy())
            for name, value in out.components.items():
                batch_components.setdefault(name, []).append(value.cpu().numpy())
            if out.done:
                break
            agent.remember_batch(query, out.write_to_memory)
            query = out.next_query
        rewards.append(np.stack(batch_rewards, axis=1))  # (count, steps)
        recalls.append(np.stack(batch_recall, axis=1))
        held.append(np.stack(batch_held, axis=1))
        finals.append(np.stack(batch_final, axis=1))
        for name, values in batch_components.items():
            components.setdefault(name, []).append(np.stack(values, axis=1))
        modes.extend(start.modes)
        played += count
    seconds = time.perf_counter() - started
    return EvaluationResult(
        agent=getattr(agent, "name", type(agent).__name__), step_rewards=np.concatenate(rewards),
        fact_recall=np.concatenate(recalls), held_fact_recall=np.concatenate(held), final_recall=np.concatenate(finals),
        components={k: np.concatenate(v) for k, v in components.items()},
        modes=modes, seconds=seconds, meta=dict(meta or {}),
    )
