"""What a rollout samples and records, per algorithm: a typed plan built once from the config and the stage.

:func:`rxmrl.training.mrl.rollout.collect_rollout` plays episodes by named per-step phases (write, answer,
reference, score, value) and reads every choice from the plan; no phase asks which algorithm runs.

==================  =========  =================  =============  ==================  ==========
plan                group G    reference member   continue with  behaviour lp of it  update
==================  =========  =================  =============  ==================  ==========
impo / gae          1          --                 its answer     --                  ``mrl_loss``
grpo / rloo         >= 2       optional (last)    random sampled the policy's own     ``mrl_loss``
dmpo                >= 1       reference+samples  best reward    none (0)            ``dmpo_loss``
evaluation          1          --                 its answer     --                  --
==================  =========  =================  =============  ==================  ==========

A new algorithm is one more constructor here (and at most one more phase in the rollout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rxmrl.model import GREEDY, SamplingConfig
from rxmrl.training.mrl.config import MrlRunConfig, StageConfig


@dataclass(frozen=True)
class RolloutPlan:
    """One rollout's choices (defaults: one sampled answer per step, nothing else recorded)."""

    sampling: SamplingConfig  # the behaviour distribution answers are sampled from (and old log-probs under)
    max_answer_tokens: int = 48  # generation limit per answer
    max_interaction_len: int = 256  # interactions written into memory are cut to this (keeping [EOS])
    group_size: int = 1  # answers sampled per (episode, step) from one STM
    # the step's reference answer joins each group as its last member, with behaviour log-probs "none" (0:
    # no policy sampled it, DMPO) or "policy" (the policy's own, floored: a PPO ratio of 1 before the update)
    reference_member: Literal["absent", "none", "policy"] = "absent"
    continue_with: Literal["random", "best"] = "random"  # a uniformly drawn sampled member, or the best reward
    reference_sampling: SamplingConfig | None = None  # the reference log-probs' distribution (None: sampling)
    blank_reference: bool = False  # the reference also scores every answer from a never written STM
    critic_max_len: int = 512  # saved data + query tokens the critic reads
    teacher_forcing: bool = False  # the reference answer, not the policy's, is written into memory
    random_reset_ratio: float = 0.0  # rows that keep the previous rollout's STM instead of fresh noise
    keep_encoded: bool = False  # record each write's encoded data (the update reuses it)
    write_memory: bool = True  # False: the no-memory ablation, STM stays the fresh initial state
    sampler: Literal["policy", "reference"] = "policy"  # who samples: the policy trained or the frozen warm start
    update: Literal["ppo", "dmpo"] = "ppo"  # the update that reads the rollout: mrl_loss or dmpo_loss

    def __post_init__(self) -> None:
        if self.continue_with not in ("random", "best"):
            raise ValueError(f"continue_with={self.continue_with!r}: expected 'random' or 'best'")
        if self.reference_member not in ("absent", "none", "policy"):
            raise ValueError(f"reference_member={self.reference_member!r}: expected 'absent', 'none' or 'policy'")

    @property
    def with_reference(self) -> bool:
        return self.reference_member != "absent"

    @property
    def members(self) -> int:
        """Answers of one (episode, step): the group, plus the reference answer."""
        return self.group_size + self.with_reference

    @property
    def score_sampling(self) -> SamplingConfig:
        return self.sampling if self.reference_sampling is None else self.reference_sampling

    @classmethod
    def for_stage(cls, config: MrlRunConfig, stage: StageConfig, keep_encoded: bool) -> RolloutPlan:
        """The training rollout of ``stage`` under ``config``'s algorithm."""
        mrl = config.mrl
        common = dict(sampling=mrl.sampling.build(), max_answer_tokens=mrl.max_answer_tokens,
                      max_interaction_len=mrl.max_interaction_len, group_size=mrl.group_size,
                      critic_max_len=mrl.critic.max_len, teacher_forcing=stage.teacher_forcing,
                      random_reset_ratio=stage.random_reset_ratio, keep_encoded=keep_encoded)
        if mrl.algorithm == "dmpo":
            return cls.dmpo(config, **common)
        return cls(**common, reference_member="policy" if mrl.with_reference else "absent",
                   blank_reference=mrl.objective.memory_credit > 0)

    @classmethod
    def dmpo(cls, config: MrlRunConfig, **common) -> RolloutPlan:
        """DMPO's candidates: the group (plus the reference answer), going on with the best; reference
        log-probs under the model's own distribution; the frozen warm start samples ``offline`` pairs."""
        dmpo = config.mrl.dmpo
        return cls(**common, reference_member="none" if config.mrl.with_reference else "absent",
                   continue_with="best", reference_sampling=GREEDY, blank_reference=dmpo.memory_credit > 0,
                   sampler="reference" if dmpo.pairs == "offline" else "policy", update="dmpo")

    @classmethod
    def for_evaluation(cls, config: MrlRunConfig, write_memory: bool = True) -> RolloutPlan:
        """Validation: one answer per step under ``eval_sampling``, written as ``[validation]`` says."""
        mrl = config.mrl
        return cls(mrl.eval_sampling.build(), max_answer_tokens=mrl.max_answer_tokens,
                   max_interaction_len=mrl.max_interaction_len, write_memory=write_memory,
                   teacher_forcing=config.validation.teacher_forcing)
