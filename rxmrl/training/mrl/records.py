"""What an MRL iteration logs about its rollout: reward per step and component, memory change, values."""

from __future__ import annotations

from rxmrl.training.mrl.advantages import explained_variance
from rxmrl.training.mrl.rollout import Rollout


def rollout_metrics(rollout: Rollout) -> dict[str, float]:
    """Reward (mean, per step), components, STM change per step, explained variance, tokens generated."""
    n, b = rollout.num_steps, rollout.num_episodes
    record = {"rollout/reward": float(rollout.rewards.mean()),
              "rollout/answer_tokens": float(rollout.mask.sum(1).float().mean()),
              "rollout/episodes": float(b)}
    if rollout.critic_ids is not None:  # a critic valued the steps
        record.update({"rollout/explained_variance": explained_variance(rollout.values, rollout.returns),
                       "rollout/value": float(rollout.values.mean())})
    if rollout.group_size > 1:  # how much the answers of one STM differ: what the group advantage feeds on
        spread = rollout.rewards.view(-1, rollout.group_size).std(1)
        record["rollout/group_reward_std"] = float(spread.mean())
    for t, value in enumerate(rollout.rewards.view(n, -1).mean(1)):
        record[f"rollout/reward_step_{t}"] = float(value)
    for t, value in enumerate(rollout.stm_change()):
        record[f"memory/stm_change_step_{t}"] = float(value)
    record.update({f"reward/{k}": float(v.nanmean()) for k, v in rollout.components.items()})  # NaN: no facts
    record.update({f"time/rollout_{k}": v for k, v in rollout.timings.items()})
    return record
