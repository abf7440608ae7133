"""Validation of a policy in the rollout: reward per episode and per step, fact recall, bootstrap intervals.

The episodes are played once; the env's reward (the training reward) scores them, and any number of other
rewards (``scorers``: envs of the same episodes, e.g. the final evaluation's preset over the sentence
encoder) score the very same answers, each under its own name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.evaluation.bootstrap import bootstrap_interval
from rxmrl.model import ReactiveTransformer
from rxmrl.training.mrl.curriculum import StageData
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.rollout import collect_rollout, stage_episodes


@dataclass
class Evaluation:
    """Per-episode mean rewards ``[E]``, per-step means ``[N]`` and fact recall of one policy on one split."""

    episode_rewards: Tensor
    step_rewards: Tensor
    fact_recall: float  # over all steps with facts
    episode_fact_recall: Tensor | None = None  # [E] per episode over its steps with facts; NaN: none has facts
    episode_rewards_by: dict[str, Tensor] = field(default_factory=dict)  # scorer name -> [E] per-episode means
    held_fact_recall: float = float("nan")  # over the facts memory holds (rxmrl.rewards.held_fact_recall)
    episode_held_fact_recall: Tensor | None = None  # [E]; NaN: memory holds none of the episode's facts

    def summary(self) -> dict[str, float]:
        """``reward`` (mean, ``_min``, ``_max``, ``_step_t``: the env's own reward), ``fact_recall``,
        ``held_fact_recall`` and each scorer's mean as ``reward/<name>``."""
        r = self.episode_rewards
        out = {"reward": float(r.mean()), "reward_min": float(r.min()), "reward_max": float(r.max()),
               "fact_recall": self.fact_recall, "held_fact_recall": self.held_fact_recall}
        out.update({f"reward_step_{t}": float(v) for t, v in enumerate(self.step_rewards)})
        out.update({f"reward/{name}": float(values.mean()) for name, values in self.episode_rewards_by.items()})
        return out


@torch.no_grad()
def evaluate_policy(policy: ReactiveTransformer, env: BatchedMrlEnv, data: StageData, plan: RolloutPlan,
                    batch_size: int = 32, seed: int = 0,
                    scorers: Mapping[str, BatchedMrlEnv] | None = None) -> Evaluation:
    """Play every episode of ``data`` in ``env`` (in order) as ``plan`` says (one answer per step) with a
    seeded generator (STM noise and any sampling), so evaluation never moves the training RNG and repeats
    exactly. ``plan.teacher_forcing``: the reference answers are written into memory (the retention
    protocol), else the policy's own. ``plan.write_memory=False``: the no-memory ablation (the policy answers
    from a fresh STM every time). Fact recall averages the steps whose data has facts (the env gives NaN for
    the others). ``scorers``: other rewards of the same answers (:func:`collect_rollout`), reported per
    episode under their names."""
    was_training = policy.training
    policy.eval()
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    episode_rewards, step_rewards, recalls, held = [], [], [], []
    scorers = dict(scorers or {})
    by_name: dict[str, list[Tensor]] = {name: [] for name in scorers}
    steps = env.steps
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        episodes = stage_episodes([data.episodes[i] for i in rows], [data.long_range[i] for i in rows], steps)
        rollout = collect_rollout(policy, env, episodes, plan, generator=generator, scorers=scorers)
        rewards = rollout.rewards.view(steps, len(rows))  # [N, B]
        episode_rewards.append(rewards.mean(0))
        for name, scored in rollout.scored_by.items():
            by_name[name].append(scored.view(steps, len(rows)).mean(0))
        step_rewards.append(rewards)
        if "fact_recall" in rollout.components:
            recalls.append(rollout.components["fact_recall"].view(steps, len(rows)))  # [N, B], NaN: no facts
            held.append(rollout.components["held_fact_recall"].view(steps, len(rows)))
    policy.train(was_training)
    per_step = torch.cat(step_rewards, dim=1).mean(1)
    others = {name: torch.cat(values) for name, values in by_name.items()}
    if not recalls:
        return Evaluation(torch.cat(episode_rewards), per_step, float("nan"), episode_rewards_by=others)
    recall, held_recall = torch.cat(recalls, dim=1), torch.cat(held, dim=1)  # [N, E]
    return Evaluation(torch.cat(episode_rewards), per_step, float(recall.nanmean()), recall.nanmean(0), others,
                      float(held_recall.nanmean()), held_recall.nanmean(0))


def bootstrap_mean_difference(after: Tensor, before: Tensor, samples: int = 10_000, seed: int = 0,
                              level: float = 0.95) -> tuple[float, float, float]:
    """Paired bootstrap over episodes of ``mean(after - before)``: ``(mean, low, high)`` of the interval.

    Pairs with a NaN on either side are dropped (fact recall of episodes whose steps have no facts)."""
    diff = (after - before).double().numpy()
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = bootstrap_interval(diff, level, samples, seed)
    return float(diff.mean()), low, high
