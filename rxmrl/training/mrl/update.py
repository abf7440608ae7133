"""The update side of an MRL iteration: a rollout's samples, their minibatches and each minibatch's loss.

The trainer's iteration reads, as CleanRL's ``ppo.py`` does::

    samples = UPDATES[plan.update](rollout, rewards, mrl)          # advantages (ppo) or preference pairs (dmpo)
    for epoch in range(ppo_epochs):
        for index in samples.minibatches(global_episodes, world_size):
            loss, terms = samples.loss(learner, index)             # mrl_loss / dmpo_loss, every term named
            loss.backward(); clip (the critic apart); AdamW step   # RunHarness.apply_gradients

:class:`PpoSamples` (impo, gae, grpo, rloo) and :class:`DmpoPairs` (dmpo) are the two updates; a
:class:`Learner` recomputes what the loss differentiates: ``STM_t`` with the current memory weights, the
critic's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rxmrl.model import GREEDY, SamplingConfig
from rxmrl.training.harness import to_device
from rxmrl.training.mrl.advantages import compute_advantages
from rxmrl.training.mrl.config import MrlConfig, StageConfig
from rxmrl.training.mrl.curriculum import rank_minibatches
from rxmrl.training.mrl.dmpo import DmpoInputs, dmpo_loss, preference_pairs, sequence_log_probs
from rxmrl.training.mrl.objective import LossInputs, ReferenceLikelihood, memory_credit, mrl_loss
from rxmrl.training.mrl.rollout import Rollout


@dataclass
class Learner:
    """What a minibatch's loss recomputes with the current weights: the memory write(s) and the value."""

    model: nn.Module  # MrlModel: .policy, .critic (None for the group estimators and dmpo)
    sampling: SamplingConfig  # the behaviour distribution the PPO ratio is taken under
    recompute_memory: bool  # the memory system trains: STM_t is rewritten, not the recorded one
    device: torch.device

    def recompute_stm(self, batch: dict[str, Any]) -> Tensor:
        """``STM_t = MemAttn(STM_{t-1}, ED_t)`` with the current weights (the recorded ``STM_t`` when the
        memory system is frozen); ``ED_t`` from the rollout when the encoder and embedding are frozen."""
        if not self.recompute_memory:
            return batch["stm_read"]
        return self._write(batch["stm_prev"], batch["write_ids"], batch["write_mask"], batch.get("encoded"))

    def recompute_stm_chain(self, batch: dict[str, Any], steps: int, group_size: int) -> tuple[Tensor, Tensor]:
        """``(STM_t, STM_{t-1})`` of whole episodes (samples ordered by step, episode, member, as
        :func:`episode_samples` makes them), rebuilt from each episode's recorded ``STM_0``:

            STM_t = MemAttn(STM_{t-1}, Encoder(interaction t)),  t = 1..N,

        so ``∂L_t/∂θ_mem`` sums over writes ``1..t`` (the recorded chain when the memory system is frozen).
        Every member of a group reads its step's one STM; the write is the interaction the episode went on
        with, which all members of the next step share."""
        if not self.recompute_memory:
            return batch["stm_read"], batch["stm_prev"]
        rows = batch["stm_prev"].shape[0] // steps
        first = torch.arange(0, rows, group_size)  # member 0 of each episode, within a step's rows
        state = batch["stm_prev"][first]  # STM_0
        reads, prevs = [], []
        encoded = batch.get("encoded")
        for t in range(steps):
            at = first + t * rows
            prevs.append(state)
            state = self._write(state, batch["write_ids"][at], batch["write_mask"][at],
                                None if encoded is None else encoded[at])
            reads.append(state)
        return (torch.cat(reads).repeat_interleave(group_size, dim=0),
                torch.cat(prevs).repeat_interleave(group_size, dim=0))

    def _write(self, stm_prev: Tensor, write_ids: Tensor, write_mask: Tensor, encoded: Tensor | None) -> Tensor:
        """One memory write with the current weights: the recorded ``ED_t`` when the rollout kept it."""
        policy = self.model.policy
        if encoded is not None:
            return policy.memory_attention(stm_prev, encoded, write_mask)
        return policy.write_memory(stm_prev, write_ids, write_mask)

    def reference_likelihood(self, batch: dict[str, Any], stm: Tensor, steps: int,
                             members: int) -> ReferenceLikelihood:
        """The memory term's inputs (:func:`~rxmrl.training.mrl.objective.memory_gain_loss`): each step's
        reference answer scored by the policy's own distribution from ``STM_t`` (differentiable, through the
        writes that built it) and from its episode's ``STM_0``, the STM before any write (no gradient).
        Samples are whole episodes in step-major order (``memory_backprop = "episode"``), so the first
        ``M / N`` rows hold every ``STM_0``. The ``members`` of a group share the step's reference answer and
        STM: one of them is scored (the same mean, the same gradient, 1/K of the passes)."""
        one = slice(None, None, members)  # sample (t·E + e)·K + g -> row t·E + e
        policy, stm = self.model.policy, stm[one]
        queries, tokens, mask = batch["queries"][one], batch["reference_answers"][one], batch["reference_mask"][one]
        real = policy.score(queries, tokens, stm, answer_mask=mask, sampling=GREEDY, with_logits=False).log_probs
        with torch.no_grad():
            reset = batch["stm_prev"][one][:stm.shape[0] // steps].repeat(steps, 1, 1, 1)  # each row's STM_0
            blank = policy.score(queries, tokens, reset, answer_mask=mask, sampling=GREEDY, with_logits=False)
        return ReferenceLikelihood(real, blank.log_probs, mask)

    def value(self, batch: dict[str, Any], stm: Tensor) -> tuple[Tensor, Tensor]:
        """``(V_t, R_t)``: the critic's value of (saved data + query, STM_t) and its target; the group
        estimators have no critic, so no value loss (``V = V_old = R = 0``)."""
        if self.model.critic is None:
            return batch["values"], batch["values"]
        return self.model.critic(batch["critic_ids"], batch["critic_mask"], stm), batch["returns"]


class PpoSamples:
    """The PPO update (``mrl_loss``): every (episode, step, member) sample with its advantage and return."""

    def __init__(self, rollout: Rollout, rewards: Tensor, mrl: MrlConfig) -> None:
        self.rollout, self.mrl = rollout, mrl
        estimator = mrl.advantages
        rollout.advantages, rollout.returns = compute_advantages(
            rewards, rollout.values, rollout.num_steps, estimator.estimator, estimator.gamma, estimator.lam,
            estimator.normalize, group_size=rollout.group_size)

    def minibatches(self, global_episodes: int, world_size: int) -> list[Tensor]:
        """One PPO epoch's minibatches: shuffled (episode, step) samples, or (``memory_backprop = "episode"``)
        shuffled whole episodes, ``max(1, minibatch_size // (N·G))`` of them, each in step-major order."""
        rollout, mrl = self.rollout, self.mrl
        if mrl.memory_backprop == "write":
            return rank_minibatches(rollout.size, global_episodes, rollout.num_steps * mrl.samples_per_step,
                                    world_size, mrl.minibatch_size, torch.randperm(rollout.size))
        per_step = rollout.num_steps * rollout.group_size
        chunks = rank_minibatches(rollout.num_episodes, global_episodes, 1, world_size,
                                  episodes_per_minibatch(mrl.minibatch_size, per_step),
                                  torch.randperm(rollout.num_episodes))
        return [episode_samples(episodes, rollout.num_episodes, rollout.num_steps, rollout.group_size)
                for episodes in chunks]

    def loss(self, learner: Learner, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``mrl_loss`` of the samples ``index``, ``STM_t`` recomputed across one write or the whole episode."""
        rollout, objective = self.rollout, self.mrl.objective
        batch = to_device(minibatch(rollout, index), learner.device)
        if self.mrl.memory_backprop == "episode":  # STM_1..STM_N from STM_0: answer t's loss reaches writes 1..t
            stm, batch["stm_prev"] = learner.recompute_stm_chain(batch, rollout.num_steps, rollout.group_size)
        else:  # STM_t from the recorded STM_{t-1}: the loss reaches the last write
            stm = learner.recompute_stm(batch)
        scored = learner.model.policy.score(batch["queries"], batch["answers"], stm, answer_mask=batch["mask"],
                                            sampling=learner.sampling, with_logits=False)  # log pi_theta, entropy
        values, returns = learner.value(batch, stm)
        reference = (None if batch["reference_answers"] is None
                     else learner.reference_likelihood(batch, stm, rollout.num_steps, rollout.group_size))
        weights = (None if batch["ref_blank_log_probs"] is None else memory_credit(
            batch["ref_log_probs"], batch["ref_blank_log_probs"], objective.memory_credit))
        return mrl_loss(LossInputs(
            log_probs=scored.log_probs, old_log_probs=batch["old_log_probs"], ref_log_probs=batch["ref_log_probs"],
            entropy=scored.entropy, mask=batch["mask"], advantages=batch["advantages"], values=values,
            old_values=batch["values"], returns=returns, stm=stm, stm_prev=batch["stm_prev"], steps=batch["steps"],
            moe_aux=scored.aux_loss, token_weights=weights, reference=reference), objective)


class DmpoPairs:
    """The DMPO update (``dmpo_loss``): one preference pair per (episode, step).

    Every pair slot makes minibatches (a pair under ``min_margin`` has weight 0), so the number of optimizer
    steps never depends on the rewards. The accepted and rejected answers of a pair read one STM,
    recomputed once from the accepted row's write."""

    def __init__(self, rollout: Rollout, rewards: Tensor, mrl: MrlConfig) -> None:
        self.rollout, self.mrl, self.dmpo = rollout, mrl, mrl.dmpo
        self.pairs = preference_pairs(rewards, rollout.group_size, self.dmpo.min_margin)
        self.anchored = self.dmpo.anchor_coef > 0 and self.pairs.neutral is not None
        rollout.advantages = rollout.returns = torch.zeros_like(rewards)  # no advantages: minibatch() fills them

    def minibatches(self, global_episodes: int, world_size: int) -> list[Tensor]:
        """One pass's minibatches of pair slots, shuffled."""
        size = self.pairs.keep.numel()
        order = torch.randperm(size)
        return rank_minibatches(size, global_episodes, self.rollout.num_steps, world_size, self.mrl.minibatch_size,
                                order)

    def loss(self, learner: Learner, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``dmpo_loss`` of the pairs ``index``: accepted, rejected (and neutral) rows scored from one STM."""
        pairs, dmpo, count = self.pairs, self.dmpo, index.numel()
        roles = [pairs.accepted[index], pairs.rejected[index]] + ([pairs.neutral[index]] if self.anchored else [])
        batch = to_device(minibatch(self.rollout, torch.cat(roles)), learner.device)
        shared = {k: batch[k][:count] for k in ("stm_prev", "stm_read", "write_ids", "write_mask")}
        shared["encoded"] = None if batch["encoded"] is None else batch["encoded"][:count]
        stm = learner.recompute_stm(shared)  # the accepted row's write: the pair's STM_t
        scored = learner.model.policy.score(batch["queries"], batch["answers"], stm.repeat(len(roles), 1, 1, 1),
                                            answer_mask=batch["mask"], sampling=GREEDY, with_logits=False)
        weights = (None if self.rollout.ref_blank_log_probs is None else memory_credit(
            batch["ref_log_probs"], batch["ref_blank_log_probs"], dmpo.memory_credit))
        mine = sequence_log_probs(scored.log_probs, batch["mask"], weights).split(count)
        ref = sequence_log_probs(batch["ref_log_probs"], batch["mask"], weights).split(count)
        return dmpo_loss(DmpoInputs(
            policy_accepted=mine[0], policy_rejected=mine[1], ref_accepted=ref[0], ref_rejected=ref[1],
            keep=pairs.keep[index].to(learner.device), stm=stm, stm_prev=shared["stm_prev"],
            steps=batch["steps"][:count], policy_neutral=mine[2] if self.anchored else None,
            ref_neutral=ref[2] if self.anchored else None, moe_aux=scored.aux_loss),
            dmpo.beta, dmpo.anchor_coef, self.mrl.objective.memory_coef, self.mrl.objective.moe_aux_coef)


UPDATES = {"ppo": PpoSamples, "dmpo": DmpoPairs}  # RolloutPlan.update -> the update that reads the rollout


def minibatch(rollout: Rollout, index: Tensor) -> dict[str, Any]:
    """The samples ``index`` of a rollout, answer columns trimmed to the longest answer among them."""
    mask = rollout.mask[index]
    width = used_width(mask)
    write_mask = rollout.write_mask[index]
    write_width = used_width(write_mask)
    rows = index.tolist()
    critic = {"critic_ids": None, "critic_mask": None}
    if rollout.critic_mask is not None:
        critic_mask = rollout.critic_mask[index]
        critic_width = used_width(critic_mask)
        critic = {"critic_ids": rollout.critic_ids[index, :critic_width], "critic_mask": critic_mask[:, :critic_width]}
    return {
        "queries": [rollout.queries[i] for i in rows],
        "answers": rollout.answers[index, :width], "mask": mask[:, :width],
        "old_log_probs": rollout.old_log_probs[index, :width], "ref_log_probs": rollout.ref_log_probs[index, :width],
        "ref_blank_log_probs": (None if rollout.ref_blank_log_probs is None
                                else rollout.ref_blank_log_probs[index, :width]),
        "write_ids": rollout.write_ids[index, :write_width], "write_mask": write_mask[:, :write_width],
        "encoded": None if rollout.encoded is None else rollout.encoded[index, :, :write_width],
        "stm_prev": rollout.stm_prev[index], "stm_read": rollout.stm_read[index],
        **critic, "advantages": rollout.advantages[index], "returns": rollout.returns[index],
        "values": rollout.values[index], "steps": rollout.steps[index], **_reference_columns(rollout, index),
    }


def _reference_columns(rollout: Rollout, index: Tensor) -> dict[str, Tensor | None]:
    """The samples' reference answers (the memory term's y*), trimmed to the longest; None where not recorded."""
    if rollout.reference_mask is None:
        return {"reference_answers": None, "reference_mask": None}
    mask = rollout.reference_mask[index]
    width = used_width(mask)
    return {"reference_answers": rollout.reference_answers[index, :width], "reference_mask": mask[:, :width]}


def schedule_length(mrl: MrlConfig, stages: list[tuple[StageConfig, int]], world_size: int) -> int:
    """Optimizer steps of a curriculum of ``(stage, train episodes)``: what the minibatches of every batch of
    every epoch add up to (the learning-rate schedule's length)."""
    total = 0
    for stage, episodes_in_stage in stages:
        for start in range(0, episodes_in_stage, mrl.batch_episodes):
            per_rank = math.ceil(min(mrl.batch_episodes, episodes_in_stage - start) / world_size)
            if mrl.memory_backprop == "episode":
                chunks = math.ceil(per_rank / episodes_per_minibatch(mrl.minibatch_size,
                                                                     stage.steps * mrl.samples_per_step))
            else:
                chunks = math.ceil(per_rank * stage.steps * mrl.samples_per_step / mrl.minibatch_size)
            total += stage.epochs * mrl.ppo_epochs * chunks
    return total


def episodes_per_minibatch(minibatch_size: int, samples_per_episode: int) -> int:
    """Whole episodes per minibatch: as many as ``minibatch_size`` samples hold, at least one."""
    return max(1, minibatch_size // samples_per_episode)


def episode_samples(episodes: Tensor, num_episodes: int, steps: int, group_size: int) -> Tensor:
    """Rollout sample indices of ``episodes``, ordered by step, then episode, then member: sample
    ``(t·B + b)·G + g`` (the rollout's step-major layout) at position ``(t·E + e)·G + g``."""
    t = torch.arange(steps).view(steps, 1, 1)
    g = torch.arange(group_size).view(1, 1, group_size)
    return ((t * num_episodes + episodes.view(1, -1, 1)) * group_size + g).flatten()


def used_width(mask: Tensor) -> int:
    """Columns up to the last one any row uses (at least 1): a minibatch is trimmed to it, so padding
    columns no sample needs are never computed."""
    return int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
