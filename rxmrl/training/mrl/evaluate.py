"""Validation of a policy in the rollout: reward per episode and per step, fact recall, bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.evaluation.bootstrap import bootstrap_interval
from rxmrl.model import ReactiveTransformer, SamplingConfig
from rxmrl.training.mrl.curriculum import StageData
from rxmrl.training.mrl.rollout import collect_rollout, stage_episodes


@dataclass
class Evaluation:
    """Per-episode mean rewards ``[E]``, per-step means ``[N]`` and fact recall of one policy on one split."""

    episode_rewards: Tensor
    step_rewards: Tensor
    fact_recall: float  # over all steps with facts
    episode_fact_recall: Tensor | None = None  # [E] per episode over its steps with facts; NaN: none has facts

    def summary(self) -> dict[str, float]:
        r = self.episode_rewards
        out = {"reward": float(r.mean()), "reward_min": float(r.min()), "reward_max": float(r.max()),
               "fact_recall": self.fact_recall}
        out.update({f"reward_step_{t}": float(v) for t, v in enumerate(self.step_rewards)})
        return out


@torch.no_grad()
def evaluate_policy(policy: ReactiveTransformer, env: BatchedMrlEnv, data: StageData, sampling: SamplingConfig,
                    batch_size: int = 32, max_answer_tokens: int = 48,
                    max_interaction_len: int = 256, seed: int = 0, write_memory: bool = True) -> Evaluation:
    """Play every episode of ``data`` in ``env`` (in order, no teacher forcing) with a seeded generator (STM
    noise and any sampling), so evaluation never moves the training RNG and repeats exactly.
    ``write_memory=False``: the no-memory ablation (the policy answers from a fresh STM every time). Fact
    recall averages the steps whose data has facts (the env gives NaN for the others)."""
    was_training = policy.training
    policy.eval()
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    episode_rewards, step_rewards, recalls = [], [], []
    steps = env.steps
    for start in range(0, len(data), batch_size):
        rows = range(start, min(start + batch_size, len(data)))
        episodes = stage_episodes([data.episodes[i] for i in rows], [data.long_range[i] for i in rows], steps)
        rollout = collect_rollout(policy, env, episodes, sampling, max_answer_tokens=max_answer_tokens,
                                  max_interaction_len=max_interaction_len, generator=generator,
                                  write_memory=write_memory)
        rewards = rollout.rewards.view(steps, len(rows))  # [N, B]
        episode_rewards.append(rewards.mean(0))
        step_rewards.append(rewards)
        if "fact_recall" in rollout.components:
            recalls.append(rollout.components["fact_recall"].view(steps, len(rows)))  # [N, B], NaN: no facts
    policy.train(was_training)
    per_step = torch.cat(step_rewards, dim=1).mean(1)
    if not recalls:
        return Evaluation(torch.cat(episode_rewards), per_step, float("nan"))
    recall = torch.cat(recalls, dim=1)  # [N, E]
    return Evaluation(torch.cat(episode_rewards), per_step, float(recall.nanmean()), recall.nanmean(0))


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
