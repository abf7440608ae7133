"""The MRL loop, written out: for each curriculum stage and epoch, rollout -> advantages -> PPO epochs.

::

    for stage in stages:                                   # e.g. 2 -> 4 -> 8 -> 16 steps
        freeze all but stage.trainable; base lrs = stage.group_lr over [optim] group_lr over [optim] lr
        for epoch in range(stage.epochs):
            for batch of episodes (the last, smaller one too):                         # iteration()
                rollout = collect_rollout(policy, env, batch, reference, critic)       # no grad; env scores
                          # grpo / rloo: G answers per step from one STM, no critic (rollout.py)
                A, R    = compute_advantages(rewards(rollout), rollout.values)         # + fact share
                for ppo_epoch in range(ppo_epochs):
                    for minibatch of (episode, step) samples:
                        STM_t = MemAttn(STM_{t-1}, Encoder(interaction t))      # recomputed: memory learns
                        log pi_theta(answer_t | query_t, STM_t), V_t = critic(saved data + query_t, STM_t)
                        loss  = mrl_loss(...)                                    # the one loss function
                        loss.backward(); average gradients over ranks
                        clip the critic's gradients and the policy's apart; AdamW step; schedule step
                checkpoint every checkpoint_every iterations (weights, optimiser, RNG, curriculum position)
            validate: the training reward and [validation] presets on the stage's validation episodes;
            keep the stage's best by validation.select (model dir first, then the checkpoint recording it)

How gradients reach memory attention (and the encoder when unfrozen) is ``mrl.memory_backprop``:
``"write"`` (default) crosses one memory write: ``STM_{t-1}`` is the recorded STM, ``STM_t`` is recomputed
with the current weights, and the decoder reads it. ``"episode"`` takes whole episodes per minibatch and
rebuilds ``STM_1..STM_N`` from the recorded ``STM_0``, so the loss of answer ``t`` reaches every write
``1..t``: credit for keeping a fact reaches the write that stored it, not only the last one.

The pieces every trainer shares are plain functions: the optimiser and clipping (:mod:`..optim`), the
schedule (:mod:`..schedule`), checkpoints (:mod:`..checkpoint`), the gradient all-reduce
(:mod:`..distributed`), the NaN guard and mixed precision (:mod:`..loop`) and the metrics writer
(:mod:`..metrics`). A killed run resumes from its latest checkpoint to the weights an uninterrupted run ends
with, bit for bit.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.envs.scoring import build_reward
from rxmrl.model import GREEDY, ReactiveTransformer
from rxmrl.rewards.facts import mix_fact_recall
from rxmrl.runtime import atomic_directory
from rxmrl.training.checkpoint import (CheckpointManager, latest_checkpoint, optimizer_state, resume_training,
                                       save_training_checkpoint)
from rxmrl.training.distributed import all_reduce_gradients, broadcast_parameters, init_distributed, lock_run_dir
from rxmrl.training.loop import (autocast, autocast_dtype, check_finite, check_weights_finite, close_run,
                                 grad_scaler, is_non_finite_sampling, start_run, to_device)
from rxmrl.training.metrics import MetricsLogger
from rxmrl.training.mrl.advantages import compute_advantages, explained_variance
from rxmrl.training.mrl.config import MrlRunConfig, StageConfig
from rxmrl.training.mrl.critic import Critic
from rxmrl.training.mrl.curriculum import (CurriculumState, StageData, epoch_batches, load_stage_data, rank_minibatches,
                                           rank_shard)
from rxmrl.training.mrl.dmpo import DmpoInputs, dmpo_loss, preference_pairs, sequence_log_probs
from rxmrl.training.mrl.evaluate import Evaluation, evaluate_policy
from rxmrl.training.mrl.objective import LossInputs, memory_credit, mrl_loss
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.rollout import Rollout, collect_rollout, rollout_env, stage_episodes
from rxmrl.training.mrl.validation import validation_line, validation_scorers
from rxmrl.training.optim import OptimConfig, build_optimizer, clip_gradients, clip_sets, learning_rates, set_trainable
from rxmrl.training.rng import seed_everything
from rxmrl.training.schedule import ScheduleConfig, build_scheduler, set_base_lrs

MEMORY_SYSTEM = ("embedding", "encoder", "memory_attention", "stm")
ENCODER_INPUTS = ("embedding", "encoder")  # what the encoded data of a write depends on
CLIPPED_APART = ("critic",)  # the value loss's large gradient must not shrink the policy's step


class MrlModel(nn.Module):
    """What the optimiser trains: the policy (RxT) and the critic (None for the group estimators); the
    frozen reference lives outside."""

    def __init__(self, policy: ReactiveTransformer, critic: Critic | None) -> None:
        super().__init__()
        self.policy, self.critic = policy, critic


def component_of(model: MrlModel):
    """``group_of`` of the optimiser: the policy's ``parameter_groups()`` names, plus ``critic``."""
    by_id = {id(p): group for group, params in model.policy.parameter_groups().items() for p in params}
    names = {f"policy.{name}": by_id[id(p)] for name, p in model.policy.named_parameters()}

    def group_of(name: str) -> str:
        return "critic" if name.startswith("critic.") else names[name]
    return group_of


def stage_word_statistics(reward, source: str, stage: StageConfig):
    """The memory tokens' word statistics of a stage's data (train split), for a reward that uses them."""
    if not getattr(reward, "uses_memory_targets", False):
        return None
    from rxmrl.envs.scoring import curriculum_word_statistics

    return curriculum_word_statistics(source, f"steps-{stage.data_steps or stage.steps}")


@dataclass
class MrlResult:
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # one per (stage, epoch)
    timings: dict[str, float] = field(default_factory=dict)  # seconds in total: rollout / reward / update
    iterations: int = 0
    final_dir: Path | None = None


class MrlTrainer:
    """Runs a curriculum on a warm-started policy (see the module docstring); holds ``run_dir``'s lock
    from construction to :meth:`close` (``fit`` closes it)."""

    def __init__(self, config: MrlRunConfig, policy: ReactiveTransformer, tokenizer, *, reward=None,
                 run_dir: str | Path | None = None) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.run_dir = Path(run_dir if run_dir is not None else config.run_dir)
        self.env = init_distributed()  # episodes are sharded by rank
        policy = policy.to(self.env.device)
        torch.manual_seed(config.seed)  # the critic's fresh head (every RNG is reseeded per rank below)
        self.reference = ReactiveTransformer(policy.config).to(self.env.device)
        self.reference.load_state_dict(policy.state_dict())
        self.reference.eval().requires_grad_(False)
        self.reward = reward if reward is not None else build_reward(
            config.reward.preset, config.reward.similarity, tokenizer, policy=policy)  # policy-embedding: a copy
        critic = Critic(policy, config.mrl.critic.memory_aware) if config.mrl.uses_critic else None
        self.model = MrlModel(policy, critic).to(self.env.device)
        broadcast_parameters(self.model, self.env)
        self.sampling = config.mrl.sampling.build()
        self.eval_sampling = config.mrl.eval_sampling.build()
        self.stage_data = [self._load(stage) for stage in config.stages]
        # one batched env per stage (its steps); every reset plays the episodes the curriculum chose
        self.envs = [self._stage_env(stage, train, self.reward) for stage, (train, _) in
                     zip(config.stages, self.stage_data, strict=True)]
        self.validation_envs = [validation_scorers(config, stage, train, policy, tokenizer, self._stage_env)
                                for stage, (train, _) in zip(config.stages, self.stage_data, strict=True)]
        self.state = CurriculumState(layout=self.layout())
        self.step = 0  # optimizer steps so far
        self._recompute_memory, self._keep_encoded = True, False
        seed_everything(config.seed + self.env.rank)
        self.group_of = component_of(self.model)
        self.optimizer = build_optimizer(self.model, self._adamw(), self.group_of)
        self.scheduler = build_scheduler(self.optimizer, ScheduleConfig(config.optim.warmup_steps, None,
                                                                        config.optim.min_lr_ratio),
                                         max(1, self.total_updates()))
        self.autocast_dtype = autocast_dtype(config.amp, config.amp_dtype, self.env.device)
        self.scaler = grad_scaler(self.autocast_dtype)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", config.keep_last)
        self.last_checkpoint: Path | None = None
        self._last_checkpoint_step: int | None = None
        self._lock = lock_run_dir(self.run_dir, self.env)
        self.metrics = MetricsLogger(self.run_dir, self.env.is_main, config.tensorboard)
        try:
            self._set_trainable(self._trainable(config.stages[0]))
            start_run(config, self.run_dir, self.env, self._resume)
            if self.step == 0:  # starting over: records of an attempt that left no checkpoint do not count
                self.metrics.rewind(0, 0)
        except BaseException:  # a refused resume: leave the run directory to the next process
            self.close()
            raise

    # ----------------------------------------------------------------------------------- setup
    def _load(self, stage: StageConfig) -> tuple[StageData, StageData]:
        seed, source = self.config.seed, self.config.data_source
        return (load_stage_data(stage, source, stage.split, stage.num_episodes, seed),
                load_stage_data(stage, source, stage.eval_split, stage.eval_episodes, seed))

    def _stage_env(self, stage: StageConfig, train: StageData, reward) -> BatchedMrlEnv:
        """A batched env of the stage's steps scoring with ``reward`` (its episodes come at every reset)."""
        return rollout_env(stage_episodes(train.episodes, train.long_range, stage.steps), stage.steps, reward,
                           self.tokenizer, device=self.env.device, max_answer_tokens=self.config.mrl.max_answer_tokens,
                           saved_data=self.config.reward.saved_data,
                           word_statistics=stage_word_statistics(reward, self.config.data_source, stage))

    def _adamw(self) -> OptimConfig:
        """AdamW of ``[optim]``; the critic's rate only where a critic trains (grpo / rloo have none)."""
        optim = self.config.optim
        group_lr = {g: lr for g, lr in optim.group_lr.items() if g != "critic" or self.model.critic is not None}
        return OptimConfig(lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas, eps=optim.eps,
                           group_lr=group_lr)

    def _trainable(self, stage: StageConfig) -> list[str]:
        """The stage's trainable components this model has (e.g. no critic for grpo / rloo)."""
        present = {g for g, params in self.model.policy.parameter_groups().items() if params}
        if self.model.critic is not None:
            present.add("critic")
        return [g for g in stage.trainable if g in present]

    def _set_trainable(self, components: list[str]) -> None:
        """Freeze the rest (bit-identical); what the update recomputes and which gradients clip together."""
        set_trainable(self.model, components, self.group_of)
        self.trainable = sorted(components)
        self.trainable_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.clip_sets = clip_sets(self.model, self.group_of, CLIPPED_APART)
        self._recompute_memory = any(g in MEMORY_SYSTEM for g in components)
        self._keep_encoded = not any(g in ENCODER_INPUTS for g in components)

    def layout(self) -> dict[str, Any]:
        """What a saved curriculum position means: a resume with another layout is refused."""
        return {"seed": self.config.seed, "batch_episodes": self.config.mrl.batch_episodes,
                "stages": [[stage.steps, len(train)] for stage, (train, _) in zip(self.config.stages,
                                                                                   self.stage_data, strict=True)]}

    def total_updates(self) -> int:
        """Optimizer steps of the whole curriculum (the schedule's length)."""
        mrl, total = self.config.mrl, 0
        for stage, (train, _) in zip(self.config.stages, self.stage_data, strict=True):
            for start in range(0, len(train), mrl.batch_episodes):
                episodes = min(mrl.batch_episodes, len(train) - start)
                per_rank = math.ceil(episodes / self.env.world_size)
                if mrl.memory_backprop == "episode":
                    chunks = math.ceil(per_rank / episodes_per_minibatch(mrl.minibatch_size,
                                                                         stage.steps * mrl.samples_per_step))
                else:
                    chunks = math.ceil(per_rank * stage.steps * mrl.samples_per_step / mrl.minibatch_size)
                total += stage.epochs * mrl.ppo_epochs * chunks
        return total

    def _enter_stage(self, stage: StageConfig) -> None:
        """The stage's trainable components and base learning rates (the schedule keeps its position)."""
        self._set_trainable(self._trainable(stage))
        set_base_lrs(self.scheduler, [self.config.optim.base_lr(group["group"], stage)
                                      for group in self.optimizer.param_groups])

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> MrlResult:
        result = MrlResult()
        cfg, state = self.config, self.state
        show = cfg.progress and self.env.is_main and sys.stderr.isatty()
        try:
            while state.stage < len(cfg.stages):
                stage = cfg.stages[state.stage]
                train, valid = self.stage_data[state.stage]
                self._enter_stage(stage)
                batches = epoch_batches(len(train), cfg.mrl.batch_episodes, cfg.seed, state.stage, state.epoch)
                bar = tqdm(total=len(batches), initial=state.batch, disable=not show, dynamic_ncols=True,
                           desc=f"mrl stage {state.stage} ({stage.steps} steps) epoch {state.epoch}")
                while state.batch < len(batches):
                    record = self.iteration(stage, train, batches[state.batch])  # this rank's shard
                    for key in ("rollout", "reward", "update"):  # in the checkpoint: they add up over resumes
                        state.timings[key] = state.timings.get(key, 0.0) + record[f"time/{key}"]
                    state.batch += 1
                    state.iterations += 1
                    bar.update(1)
                    bar.set_postfix(reward=f"{record['rollout/reward']:.3f}", refresh=False)
                    if state.iterations % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                bar.close()
                result.evaluations.append(self._end_epoch(stage))
            result.iterations, result.timings = state.iterations, dict(state.timings)
            result.final_dir = self.run_dir / "final"
            self._check_weights_finite("final model")
            if self.env.is_main:
                self._save_policy(result.final_dir)
        finally:
            self.close()
        return result

    def training_rewards(self, rollout: Rollout) -> Tensor:
        """The rewards the advantages are computed from: the env's, with ``reward.fact_weight`` paid for recall."""
        scale = getattr(getattr(self.reward, "config", None), "scale", 10.0)  # a custom reward: the 0-10 range
        return mix_fact_recall(rollout.rewards, rollout.components["fact_recall"], self.config.reward.fact_weight,
                               scale)  # weight 0: the rollout's own rewards, unchanged

    def iteration(self, stage: StageConfig, data: StageData, indices: list[int]) -> dict[str, float]:
        """One rollout of this rank's shard of the global batch ``indices``, its advantages and PPO epochs."""
        mrl, objective, policy = self.config.mrl, self.config.mrl.objective, self.model.policy
        clock = time.perf_counter()
        rollout = self.collect(stage, data, rank_shard(indices, self.env.rank, self.env.world_size))
        rollout_seconds = time.perf_counter() - clock
        self._check_finite(float(rollout.rewards.sum()), "reward", weights_at_fault=False)
        rewards = self.training_rewards(rollout)
        clock = time.perf_counter()
        self.model.train()
        update = self._dmpo_update if self.plan(stage).update == "dmpo" else self._ppo_update
        sums, updates = update(stage, rollout, rewards, len(indices))
        record = {f"train/{k}": v / updates for k, v in sums.items()}
        record.update(self._iteration_record(stage, rollout, rewards, rollout_seconds, time.perf_counter() - clock))
        self.metrics.log(self.step, record)
        return record

    def _ppo_update(self, stage: StageConfig, rollout: Rollout, rewards: Tensor,
                    global_episodes: int) -> tuple[dict[str, float], int]:
        """Advantages, then ``ppo_epochs`` passes of ``mrl_loss`` over the rollout's samples."""
        mrl, objective, policy = self.config.mrl, self.config.mrl.objective, self.model.policy
        rollout.advantages, rollout.returns = compute_advantages(
            rewards, rollout.values, rollout.num_steps, mrl.advantages.estimator, mrl.advantages.gamma,
            mrl.advantages.lam, mrl.advantages.normalize, group_size=rollout.group_size)
        sums: dict[str, float] = {}
        updates = 0
        by_episode = mrl.memory_backprop == "episode"
        for _ in range(mrl.ppo_epochs):
            for index in self._ppo_minibatches(rollout, stage, global_episodes):
                batch = to_device(minibatch(rollout, index), self.env.device)
                with autocast(self.autocast_dtype):
                    if by_episode:  # STM_1..STM_N from STM_0: answer t's loss reaches writes 1..t
                        stm, batch["stm_prev"] = self.recompute_stm_chain(batch, rollout.num_steps,
                                                                          rollout.group_size)
                    else:  # STM_t from the recorded STM_{t-1}: the loss reaches the last write
                        stm = self.recompute_stm(batch)
                    scored = policy.score(batch["queries"], batch["answers"], stm, answer_mask=batch["mask"],
                                          sampling=self.sampling, with_logits=False)  # log pi_theta, entropy
                    values, returns = self.value(batch, stm)
                    weights = (None if batch["ref_blank_log_probs"] is None else memory_credit(
                        batch["ref_log_probs"], batch["ref_blank_log_probs"], objective.memory_credit))
                    loss, terms = mrl_loss(LossInputs(
                        log_probs=scored.log_probs, old_log_probs=batch["old_log_probs"],
                        ref_log_probs=batch["ref_log_probs"], entropy=scored.entropy, mask=batch["mask"],
                        advantages=batch["advantages"], values=values, old_values=batch["values"], returns=returns,
                        stm=stm, stm_prev=batch["stm_prev"], steps=batch["steps"], moe_aux=scored.aux_loss,
                        token_weights=weights), objective)
                self._optimizer_step(loss, terms, sums)
                updates += 1
        return sums, updates

    def _dmpo_update(self, stage: StageConfig, rollout: Rollout, rewards: Tensor,
                     global_episodes: int) -> tuple[dict[str, float], int]:
        """``ppo_epochs`` passes of ``dmpo_loss`` over the rollout's pairs (one per episode and step).

        Every pair slot makes minibatches (a pair under ``min_margin`` has weight 0), so the number of
        optimizer steps never depends on the rewards. The accepted and rejected answers of a pair read one
        STM, recomputed once from the accepted row's write."""
        mrl, dmpo, policy = self.config.mrl, self.config.mrl.dmpo, self.model.policy
        pairs = preference_pairs(rewards, rollout.group_size, dmpo.min_margin)
        anchored = dmpo.anchor_coef > 0 and pairs.neutral is not None
        rollout.advantages = rollout.returns = torch.zeros_like(rewards)  # no advantages: minibatch() fills them
        sums: dict[str, float] = {}
        updates = 0
        for _ in range(mrl.ppo_epochs):
            order = torch.randperm(pairs.keep.numel())
            for index in rank_minibatches(pairs.keep.numel(), global_episodes, stage.steps, self.env.world_size,
                                          mrl.minibatch_size, order):
                roles = [pairs.accepted[index], pairs.rejected[index]] + ([pairs.neutral[index]] if anchored else [])
                batch = to_device(minibatch(rollout, torch.cat(roles)), self.env.device)
                count = index.numel()
                with autocast(self.autocast_dtype):
                    shared = {k: batch[k][:count] for k in ("stm_prev", "stm_read", "write_ids", "write_mask")}
                    shared["encoded"] = None if batch["encoded"] is None else batch["encoded"][:count]
                    stm = self.recompute_stm(shared)  # the accepted row's write: the pair's STM_t
                    scored = policy.score(batch["queries"], batch["answers"], stm.repeat(len(roles), 1, 1, 1),
                                          answer_mask=batch["mask"], sampling=GREEDY, with_logits=False)
                    weights = (None if rollout.ref_blank_log_probs is None else memory_credit(
                        batch["ref_log_probs"], batch["ref_blank_log_probs"], dmpo.memory_credit))
                    mine = sequence_log_probs(scored.log_probs, batch["mask"], weights).split(count)
                    ref = sequence_log_probs(batch["ref_log_probs"], batch["mask"], weights).split(count)
                    loss, terms = dmpo_loss(DmpoInputs(
                        policy_accepted=mine[0], policy_rejected=mine[1], ref_accepted=ref[0], ref_rejected=ref[1],
                        keep=pairs.keep[index].to(self.env.device), stm=stm, stm_prev=shared["stm_prev"],
                        steps=batch["steps"][:count], policy_neutral=mine[2] if anchored else None,
                        ref_neutral=ref[2] if anchored else None, moe_aux=scored.aux_loss),
                        dmpo.beta, dmpo.anchor_coef, mrl.objective.memory_coef, mrl.objective.moe_aux_coef)
                self._optimizer_step(loss, terms, sums)
                updates += 1
        return sums, updates

    def _optimizer_step(self, loss: Tensor, terms: dict[str, Tensor], sums: dict[str, float]) -> None:
        """Backward, all-reduce, clip (the critic apart), AdamW and schedule step; the terms summed into ``sums``."""
        self._check_finite(float(loss.detach()), "loss")
        self.scaler.scale(loss).backward()
        all_reduce_gradients(self.trainable_parameters, self.env)
        self.scaler.unscale_(self.optimizer)
        norms = clip_gradients(self.clip_sets, self.config.optim.grad_clip)  # the critic apart
        if not self.scaler.is_enabled():  # with float16 the scaler skips such steps itself
            self._check_finite(norms["grad_norm"], "gradient norm")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        for key, value in {**terms, **norms}.items():  # the loss itself is terms["loss/total"]
            sums[key] = sums.get(key, 0.0) + float(value)

    def _ppo_minibatches(self, rollout: Rollout, stage: StageConfig, global_episodes: int) -> list[Tensor]:
        """One PPO epoch's minibatches: shuffled (episode, step) samples, or (``memory_backprop = "episode"``)
        shuffled whole episodes, ``max(1, minibatch_size // (N·G))`` of them, each in step-major order."""
        mrl = self.config.mrl
        if mrl.memory_backprop == "write":
            return rank_minibatches(rollout.size, global_episodes, stage.steps * mrl.samples_per_step,
                                    self.env.world_size, mrl.minibatch_size, torch.randperm(rollout.size))
        per_step = rollout.num_steps * rollout.group_size
        chunks = rank_minibatches(rollout.num_episodes, global_episodes, 1, self.env.world_size,
                                  episodes_per_minibatch(mrl.minibatch_size, per_step),
                                  torch.randperm(rollout.num_episodes))
        return [episode_samples(episodes, rollout.num_episodes, rollout.num_steps, rollout.group_size)
                for episodes in chunks]

    def recompute_stm_chain(self, batch: dict[str, Any], steps: int, group_size: int) -> tuple[Tensor, Tensor]:
        """``(STM_t, STM_{t-1})`` of whole episodes (samples ordered by step, episode, member, as
        :func:`episode_samples` makes them), rebuilt from each episode's recorded ``STM_0``:

            STM_t = MemAttn(STM_{t-1}, Encoder(interaction t)),  t = 1..N,

        so ``∂L_t/∂θ_mem`` sums over writes ``1..t`` (the recorded chain when the memory system is frozen).
        Every member of a group reads its step's one STM; the write is the interaction the episode went on
        with, which all members of the next step share."""
        if not self._recompute_memory:
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

    def recompute_stm(self, batch: dict[str, Any]) -> Tensor:
        """``STM_t = MemAttn(STM_{t-1}, ED_t)`` with the current weights (the recorded ``STM_t`` when the
        memory system is frozen); ``ED_t`` from the rollout when the encoder and embedding are frozen."""
        if not self._recompute_memory:
            return batch["stm_read"]
        return self._write(batch["stm_prev"], batch["write_ids"], batch["write_mask"], batch.get("encoded"))

    def _write(self, stm_prev: Tensor, write_ids: Tensor, write_mask: Tensor, encoded: Tensor | None) -> Tensor:
        """One memory write with the current weights: the recorded ``ED_t`` when the rollout kept it."""
        policy = self.model.policy
        if encoded is not None:
            return policy.memory_attention(stm_prev, encoded, write_mask)
        return policy.write_memory(stm_prev, write_ids, write_mask)

    def value(self, batch: dict[str, Any], stm: Tensor) -> tuple[Tensor, Tensor]:
        """``(V_t, R_t)``: the critic's value of (saved data + query, STM_t) and its target; the group
        estimators have no critic, so no value loss (``V = V_old = R = 0``)."""
        if self.model.critic is None:
            return batch["values"], batch["values"]
        return self.model.critic(batch["critic_ids"], batch["critic_mask"], stm), batch["returns"]

    def _iteration_record(self, stage: StageConfig, rollout: Rollout, rewards: Tensor, rollout_seconds: float,
                          update_seconds: float) -> dict[str, float]:
        """What an iteration logs besides the update's means: the rollout, time, position, learning rates."""
        record = rollout_metrics(rollout)
        if rewards is not rollout.rewards:
            record["rollout/training_reward"] = float(rewards.mean())  # with the fact-recall share
        reward_seconds = rollout.timings["reward"]
        record.update({"time/rollout": rollout_seconds - reward_seconds, "time/reward": reward_seconds,
                       "time/update": update_seconds, "curriculum/stage": self.state.stage,
                       "curriculum/steps": stage.steps, "curriculum/epoch": self.state.epoch})
        record.update(learning_rates(self.optimizer))
        return record

    def collect(self, stage: StageConfig, data: StageData, indices: list[int]) -> Rollout:
        """The rollout of ``indices`` (no gradients; the env scores). A policy whose logits went NaN/inf
        stops the run through the NaN guard, as does a reward the env refused as non-finite."""
        episodes = stage_episodes([data.episodes[i] for i in indices], [data.long_range[i] for i in indices],
                                  stage.steps)
        plan = self.plan(stage)
        policy, critic = self.model.policy, self.model.critic
        policy.eval()
        if critic is not None:
            critic.eval()
        sampler = self.reference if plan.sampler == "reference" else policy  # offline pairs: the warm start's
        try:
            rollout = collect_rollout(sampler, self._env(stage), episodes, plan, reference=self.reference,
                                      critic=critic, carried=self.state.carried)
        except FloatingPointError:  # the env refused a non-finite reward
            self._check_finite(math.nan, "reward", weights_at_fault=False)
            raise
        except RuntimeError as error:  # the sampler met NaN/inf logits: the weights diverged
            if not is_non_finite_sampling(error):
                raise
            self._check_finite(math.nan, "sampling probabilities (the policy's logits)")
            raise
        if stage.random_reset_ratio > 0:
            self.state.carried = (rollout.final_stm.cpu(), rollout.final_ref_stm.cpu())
        return rollout

    def plan(self, stage: StageConfig) -> RolloutPlan:
        """The stage's rollout plan under the algorithm (encoded data kept where the update reuses it)."""
        return RolloutPlan.for_stage(self.config, stage, keep_encoded=self._recompute_memory and self._keep_encoded)

    def _env(self, stage: StageConfig) -> BatchedMrlEnv:
        """The batched env built for ``stage`` (one per curriculum stage: its number of steps)."""
        return self.envs[self._stage_index(stage)]

    def _stage_index(self, stage: StageConfig) -> int:
        index = next((i for i, s in enumerate(self.config.stages) if s is stage), self.state.stage)
        if self.envs[index].steps != stage.steps:
            raise ValueError(f"stage with steps={stage.steps} is not one of this trainer's stages")
        return index

    # ---------------------------------------------------------------------------- the NaN guard
    def _check_finite(self, value: float, what: str, weights_at_fault: bool = True) -> None:
        """:func:`rxmrl.training.loop.check_finite` at this step; ``weights_at_fault``: the current weights
        produced ``value`` (a checkpoint of exactly them is moved aside)."""
        diverged = self.last_checkpoint if weights_at_fault and self._last_checkpoint_step == self.step else None
        check_finite(value, what, step=self.step, env=self.env, optimizer=self.optimizer,
                     checkpoints=self.checkpoints, diverged=diverged)

    def _check_weights_finite(self, what: str) -> None:
        check_weights_finite(self.model, what, step=self.step, env=self.env, checkpoints=self.checkpoints)

    # ---------------------------------------------------------------------------- evaluation
    def evaluate(self, stage_index: int | None = None, split: str = "valid",
                 policy: ReactiveTransformer | None = None, write_memory: bool = True,
                 presets: bool = True) -> Evaluation:
        """Validation (or ``split="train"``) episodes of a stage, played by ``policy`` (default: the one
        trained) and scored by the training reward and (``presets``) the ``[validation]`` presets."""
        index = self.state.stage if stage_index is None else stage_index
        data = self.stage_data[index][1 if split == "valid" else 0]
        policy = policy if policy is not None else self.model.policy
        return evaluate_policy(policy, self.envs[index], data, RolloutPlan.for_evaluation(self.config, write_memory),
                               max(32, self.config.mrl.batch_episodes), seed=self.config.seed,
                               scorers=self.validation_envs[index] if presets else None)

    def _end_epoch(self, stage: StageConfig) -> dict[str, Any]:
        """Validate, advance the curriculum position, checkpoint (``best`` + a model dir when it improved)."""
        index, selected = self.state.stage, self.config.validation.selected
        summary = self.evaluate(index).summary()
        self.metrics.log(self.step, {f"eval/stage{index}/{k}": v for k, v in summary.items()})
        improved = index not in self.state.best or summary[selected] > self.state.best[index]
        if improved:  # the folder first, then the checkpoint that records it (a kill between redoes both)
            self._check_weights_finite(f"best-stage-{index} model")
            if self.env.is_main:
                self._save_policy(self.run_dir / f"best-stage-{index}")
            self.state.best[index] = summary[selected]
        epoch = self.state.epoch
        self.state.next_epoch(stage.epochs)
        self.save_checkpoint(best=improved)
        if self.env.is_main:
            print(f"stage {index} ({stage.steps} steps) epoch {epoch}, "
                  f"{validation_line(summary, self.config)}{f' (best by {selected})' if improved else ''}",
                  flush=True)
        return {"stage": index, "epoch": epoch, "steps": stage.steps, **summary}

    def _save_policy(self, directory: Path) -> Path:
        """A directory loadable by ``ReactiveTransformer.from_pretrained`` + ``RxTokenizer.load``, replaced
        atomically (a kill leaves the previous complete folder or the new one)."""
        with atomic_directory(directory) as temporary:
            self.model.policy.save_pretrained(temporary)
            self.tokenizer.save(temporary)
        return directory

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Everything an exact resume needs, atomically; every rank calls it. Refused (NaN guard) when a
        weight is not finite, so the last checkpoint stays a good one."""
        self._check_weights_finite("checkpoint")
        state = {"step": self.step, **optimizer_state(self.optimizer, self.scheduler, self.scaler),
                 "trainable": self.trainable, "world_size": self.env.world_size,
                 "curriculum": self.state.state_dict(), "metrics_position": self.metrics.position()}
        self.last_checkpoint = save_training_checkpoint(self.checkpoints, self.model, state, self.step, self.env,
                                                        best=best)
        self._last_checkpoint_step = self.step
        return self.last_checkpoint

    def _resume(self) -> bool:
        """Continue from the run directory's latest checkpoint (False: there is none): weights, optimiser,
        schedule position, RNG, curriculum position; ``metrics.jsonl`` cut back to it."""
        path = latest_checkpoint(self.checkpoints, self.env)
        if path is None:
            return False
        state = resume_training(path, self.model, self.optimizer, self.scheduler, self.scaler, self.env)
        self._set_trainable(state["trainable"])
        self.state.load_state_dict(state["curriculum"])
        self.step = state["step"]
        self.last_checkpoint, self._last_checkpoint_step = Path(path), self.step
        self.metrics.rewind(state["metrics_position"], self.step)
        if self.env.is_main:  # after the trainer's own state: a refused resume never says it resumed
            print(f"resumed from {path} at step {self.step}", flush=True)
        return True

    def close(self) -> None:
        """Close the metric files and release the run directory."""
        close_run(self.metrics, self._lock)
        self._lock = None


def minibatch(rollout: Rollout, index: Tensor) -> dict[str, Any]:
    """The samples ``index`` of a rollout, answer columns trimmed to the longest answer among them."""
    mask = rollout.mask[index]
    width = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
    write_mask = rollout.write_mask[index]
    write_width = int(write_mask.any(0).nonzero().max()) + 1
    rows = index.tolist()
    critic = {"critic_ids": None, "critic_mask": None}
    if rollout.critic_mask is not None:
        critic_mask = rollout.critic_mask[index]
        critic_width = int(critic_mask.any(0).nonzero().max()) + 1
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
        "values": rollout.values[index], "steps": rollout.steps[index],
    }


def episodes_per_minibatch(minibatch_size: int, samples_per_episode: int) -> int:
    """Whole episodes per minibatch: as many as ``minibatch_size`` samples hold, at least one."""
    return max(1, minibatch_size // samples_per_episode)


def episode_samples(episodes: Tensor, num_episodes: int, steps: int, group_size: int) -> Tensor:
    """Rollout sample indices of ``episodes``, ordered by step, then episode, then member: sample
    ``(t·B + b)·G + g`` (the rollout's step-major layout) at position ``(t·E + e)·G + g``."""
    t = torch.arange(steps).view(steps, 1, 1)
    g = torch.arange(group_size).view(1, 1, group_size)
    return ((t * num_episodes + episodes.view(1, -1, 1)) * group_size + g).flatten()


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
