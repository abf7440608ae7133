"""The MRL loop: for each curriculum stage and epoch, rollout -> advantages -> PPO epochs over minibatches.

::

    for stage in stages:                                   # e.g. 2 -> 4 -> 8 -> 16 steps
        freeze all but stage.trainable; set the stage's learning rates
        for epoch in range(stage.epochs):
            for batch of episodes (the last, smaller one too):
                rollout    = collect_rollout(policy, env, batch, reference, critic)  # no grad; env scores
                             # grpo / rloo: G answers per step from one STM, no critic (rollout.py)
                A, R       = compute_advantages(rewards(rollout), rollout.values)   # + fact share
                for ppo_epoch in range(ppo_epochs):
                    for minibatch of (episode, step) samples:
                        STM_t = MemAttn(STM_{t-1}, Encoder(interaction t))      # recomputed: memory learns
                        loss  = mrl_loss(score(answer_t | STM_t), critic, ...)   # the one loss function
                        Trainer.train_step([minibatch])                          # clip, AdamW, NaN guard
                checkpoint (weights, optimizers, RNG, curriculum position)
            evaluate on validation; keep the stage's best (model dir first, then the checkpoint recording it)

Gradients reach memory attention (and the encoder when unfrozen) through one memory write: ``STM_{t-1}``
is the recorded STM, ``STM_t`` is recomputed with the current weights, and the decoder reads it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.envs.scoring import build_reward
from rxmrl.model import ReactiveTransformer
from rxmrl.rewards.facts import mix_fact_recall
from rxmrl.runtime import atomic_directory
from rxmrl.training.distributed import init_distributed
from rxmrl.training.loop import Trainer, is_non_finite_sampling
from rxmrl.training.mrl.advantages import compute_advantages, explained_variance
from rxmrl.training.mrl.config import MrlRunConfig, StageConfig
from rxmrl.training.mrl.critic import Critic
from rxmrl.training.mrl.curriculum import (CurriculumState, StageData, epoch_batches, load_stage_data, rank_minibatches,
                                           rank_shard)
from rxmrl.training.mrl.evaluate import Evaluation, evaluate_policy
from rxmrl.training.mrl.objective import LossInputs, mrl_loss
from rxmrl.training.mrl.rollout import Rollout, collect_rollout, rollout_env, stage_episodes

MEMORY_SYSTEM = ("embedding", "encoder", "memory_attention", "stm")
ENCODER_INPUTS = ("embedding", "encoder")  # what the encoded data of a write depends on


class MrlModel(nn.Module):
    """What the optimiser trains: the policy (RxT) and the critic (None for the group estimators); the
    frozen reference lives outside."""

    def __init__(self, policy: ReactiveTransformer, critic: Critic | None) -> None:
        super().__init__()
        self.policy, self.critic = policy, critic


def component_of(model: MrlModel):
    """``group_of`` for the shared loop: the policy's ``parameter_groups()`` names, plus ``critic``."""
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
    """Runs a curriculum on a warm-started policy (see the module docstring)."""

    def __init__(self, config: MrlRunConfig, policy: ReactiveTransformer, tokenizer, *, reward=None,
                 run_dir: str | Path | None = None) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.run_dir = Path(run_dir if run_dir is not None else config.run_dir)
        torch.manual_seed(config.seed)  # the critic's fresh head (the Trainer reseeds before training)
        self.reference = ReactiveTransformer(policy.config)
        self.reference.load_state_dict(policy.state_dict())
        self.reference.eval().requires_grad_(False)
        self.reward = reward if reward is not None else build_reward(
            config.reward.preset, config.reward.similarity, tokenizer, policy=policy)  # policy-embedding: the warm start's
        critic = Critic(policy, config.mrl.critic.memory_aware) if config.mrl.uses_critic else None
        self.model = MrlModel(policy, critic)
        self.sampling = config.mrl.sampling.build()
        self.eval_sampling = config.mrl.eval_sampling.build()
        self.stage_data = [self._load(stage, i) for i, stage in enumerate(config.stages)]
        # one batched env per stage (its steps); every reset plays the episodes the curriculum chose
        self.envs = [rollout_env(stage_episodes(train.episodes, train.long_range, stage.steps), stage.steps,
                                 self.reward, tokenizer, device=policy.device,
                                 max_answer_tokens=config.mrl.max_answer_tokens,
                                 saved_data=config.reward.saved_data,
                                 word_statistics=stage_word_statistics(self.reward, config.data_source, stage))
                     for stage, (train, _) in zip(config.stages, self.stage_data, strict=True)]
        self.state = CurriculumState(layout=self.layout())
        self._recompute_memory = True
        self._keep_encoded = False
        self.world_size = init_distributed().world_size  # episodes are sharded by rank
        critic_lr = {"critic": config.mrl.critic.lr} if critic is not None else {}
        optim = dataclasses.replace(config.optim, group_lr={**critic_lr, **config.optim.group_lr})
        loop = dataclasses.replace(config.loop, max_steps=max(1, self.total_updates()), seed=config.seed)
        self.trainer = Trainer(self.model, self._step_fn, None, config=loop, optim=optim, schedule=config.schedule,
                               group_of=component_of(self.model), trainable=self._trainable(config.stages[0]),
                               run_dir=self.run_dir, stateful={"curriculum": self.state}, run_config=config,
                               desc="mrl")

    # ----------------------------------------------------------------------------------- setup
    def _load(self, stage: StageConfig, index: int) -> tuple[StageData, StageData]:
        seed = self.config.seed
        train = load_stage_data(stage, self.config.data_source, stage.split, stage.num_episodes, seed)
        valid = load_stage_data(stage, self.config.data_source, stage.eval_split, stage.eval_episodes, seed)
        return train, valid

    def _trainable(self, stage: StageConfig) -> list[str]:
        present = set(self.model.policy.parameter_groups()) | ({"critic"} if self.model.critic is not None else set())
        present = {g for g in present if g == "critic" or self.model.policy.parameter_groups()[g]}
        return [g for g in stage.trainable if g in present]

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
                samples = math.ceil(episodes / self.world_size) * stage.steps * mrl.group_size  # per rank
                total += stage.epochs * mrl.ppo_epochs * math.ceil(samples / mrl.minibatch_size)
        return total

    def _enter_stage(self, stage: StageConfig) -> None:
        trainable = self._trainable(stage)
        self.trainer.set_trainable(trainable)
        self._recompute_memory = any(g in MEMORY_SYSTEM for g in trainable)
        self._keep_encoded = not any(g in ENCODER_INPUTS for g in trainable)
        lrs = {"critic": self.config.mrl.critic.lr, **self.config.optim.group_lr, **stage.group_lr}
        scheduler = self.trainer.scheduler
        for i, group in enumerate(self.trainer.optimizer.param_groups):
            base = lrs.get(group["group"], self.config.optim.lr)
            scheduler.base_lrs[i] = group["initial_lr"] = base
            group["lr"] = base * scheduler.lr_lambdas[i](scheduler.last_epoch)

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> MrlResult:
        result = MrlResult()
        cfg, state = self.config, self.state
        show = cfg.progress and sys.stderr.isatty()
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
                        self.trainer.save_checkpoint()
                bar.close()
                result.evaluations.append(self._end_epoch(stage, valid))
            result.iterations, result.timings = state.iterations, dict(state.timings)
            result.final_dir = self.run_dir / "final"
            self.trainer.check_weights_finite("final model")
            if self.trainer.env.is_main:
                self._save_policy(result.final_dir)
        finally:
            self.trainer.close()
        return result

    def training_rewards(self, rollout: Rollout) -> torch.Tensor:
        """The rewards the advantages are computed from: the env's, with ``reward.fact_weight`` paid for recall."""
        scale = getattr(getattr(self.reward, "config", None), "scale", 10.0)  # a custom reward: the 0-10 range
        return mix_fact_recall(rollout.rewards, rollout.components["fact_recall"], self.config.reward.fact_weight,
                               scale)  # weight 0: the rollout's own rewards, unchanged

    def iteration(self, stage: StageConfig, data: StageData, indices: list[int]) -> dict[str, float]:
        """One rollout of this rank's shard of the global batch ``indices`` and its PPO epochs."""
        mrl, env = self.config.mrl, self.trainer.env
        clock = time.perf_counter()
        try:
            rollout = self.collect(stage, data, rank_shard(indices, env.rank, env.world_size))
        except FloatingPointError:  # the env refused a non-finite reward: stop as for any other NaN
            self.trainer.check_finite(math.nan, "reward", weights_at_fault=False)
            raise
        except RuntimeError as error:  # the sampler met NaN/inf logits: the weights diverged
            if not is_non_finite_sampling(error):
                raise
            self.trainer.check_finite(math.nan, "sampling probabilities (the policy's logits)")
            raise
        rollout_seconds = time.perf_counter() - clock
        self.trainer.check_finite(float(rollout.rewards.sum()), "reward", weights_at_fault=False)
        rewards = self.training_rewards(rollout)
        rollout.advantages, rollout.returns = compute_advantages(
            rewards, rollout.values, rollout.num_steps, mrl.advantages.estimator, mrl.advantages.gamma,
            mrl.advantages.lam, mrl.advantages.normalize, group_size=rollout.group_size)
        clock = time.perf_counter()
        sums: dict[str, float] = {}
        updates = 0
        for _ in range(mrl.ppo_epochs):
            order = torch.randperm(rollout.size)
            for index in rank_minibatches(rollout.size, len(indices), stage.steps * mrl.group_size,
                                          env.world_size, mrl.minibatch_size, order):
                metrics = self.trainer.train_step([minibatch(rollout, index)])
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value
                updates += 1
        update_seconds = time.perf_counter() - clock
        record = {f"train/{k}": v / updates for k, v in sums.items()}
        record.update(rollout_metrics(rollout))
        if rewards is not rollout.rewards:
            record["rollout/training_reward"] = float(rewards.mean())  # with the fact-recall share
        reward_seconds = rollout.timings["reward"]
        record.update({"time/rollout": rollout_seconds - reward_seconds, "time/reward": reward_seconds,
                       "time/update": update_seconds, "curriculum/stage": self.state.stage,
                       "curriculum/steps": stage.steps, "curriculum/epoch": self.state.epoch})
        record.update({f"lr/{g['group']}": g["lr"] for g in self.trainer.optimizer.param_groups})
        self.trainer.metrics.log(self.trainer.step, record)
        return record

    def collect(self, stage: StageConfig, data: StageData, indices: list[int]) -> Rollout:
        mrl = self.config.mrl
        episodes = stage_episodes([data.episodes[i] for i in indices], [data.long_range[i] for i in indices],
                                  stage.steps)
        policy, critic = self.model.policy, self.model.critic
        policy.eval()
        if critic is not None:
            critic.eval()
        rollout = collect_rollout(
            policy, self._env(stage), episodes, self.sampling, reference=self.reference, critic=critic,
            max_answer_tokens=mrl.max_answer_tokens, max_interaction_len=mrl.max_interaction_len,
            critic_max_len=mrl.critic.max_len, teacher_forcing=stage.teacher_forcing,
            random_reset_ratio=stage.random_reset_ratio, carried=self.state.carried,
            keep_encoded=self._recompute_memory and self._keep_encoded, group_size=mrl.group_size)
        if stage.random_reset_ratio > 0:
            self.state.carried = (rollout.final_stm.cpu(), rollout.final_ref_stm.cpu())
        return rollout

    def _env(self, stage: StageConfig) -> BatchedMrlEnv:
        """The batched env built for ``stage`` (one per curriculum stage: its number of steps)."""
        index = next((i for i, s in enumerate(self.config.stages) if s is stage), self.state.stage)
        if self.envs[index].steps != stage.steps:
            raise ValueError(f"stage with steps={stage.steps} is not one of this trainer's stages")
        return self.envs[index]

    def _step_fn(self, model: MrlModel, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one minibatch: recompute STM_t, score the answers, value them, assemble with ``mrl_loss``."""
        policy = model.policy
        if self._recompute_memory and batch.get("encoded") is not None:  # encoder frozen: ED from the rollout
            stm = policy.memory_attention(batch["stm_prev"], batch["encoded"], batch["write_mask"])
        elif self._recompute_memory:
            stm = policy.write_memory(batch["stm_prev"], batch["write_ids"], batch["write_mask"])
        else:
            stm = batch["stm_read"]
        scored = policy.score(batch["queries"], batch["answers"], stm, answer_mask=batch["mask"],
                              sampling=self.sampling, with_logits=False)
        if model.critic is not None:
            values, returns = model.critic(batch["critic_ids"], batch["critic_mask"], stm), batch["returns"]
        else:  # group estimators: no critic, so no value loss (V = V_old = R = 0)
            values = returns = batch["values"]
        inputs = LossInputs(
            log_probs=scored.log_probs, old_log_probs=batch["old_log_probs"], ref_log_probs=batch["ref_log_probs"],
            entropy=scored.entropy, mask=batch["mask"], advantages=batch["advantages"],
            values=values, old_values=batch["values"], returns=returns, stm=stm,
            stm_prev=batch["stm_prev"], steps=batch["steps"], moe_aux=scored.aux_loss)
        return mrl_loss(inputs, self.config.mrl.objective)

    # ---------------------------------------------------------------------------- evaluation
    def evaluate(self, stage_index: int | None = None, split: str = "valid",
                 policy: ReactiveTransformer | None = None, write_memory: bool = True) -> Evaluation:
        """Validation (or ``split="train"``) episodes of a stage, played by ``policy`` (default: the one trained)."""
        index = self.state.stage if stage_index is None else stage_index
        stage = self.config.stages[index]
        data = self.stage_data[index][1 if split == "valid" else 0]
        mrl = self.config.mrl
        policy = policy if policy is not None else self.model.policy
        return evaluate_policy(policy, self.envs[index], data, self.eval_sampling, max(32, mrl.batch_episodes),
                               mrl.max_answer_tokens, mrl.max_interaction_len, seed=self.config.seed,
                               write_memory=write_memory)

    def _end_epoch(self, stage: StageConfig, valid: StageData) -> dict[str, Any]:
        """Evaluate, advance the curriculum position, checkpoint (``best`` + a model dir when it improved)."""
        index = self.state.stage
        summary = self.evaluate(index).summary()
        self.trainer.metrics.log(self.trainer.step, {f"eval/stage{index}/{k}": v for k, v in summary.items()})
        improved = index not in self.state.best or summary["reward"] > self.state.best[index]
        if improved:  # the folder first, then the checkpoint that records it (a kill between redoes both)
            self.trainer.check_weights_finite(f"best-stage-{index} model")
            if self.trainer.env.is_main:
                self._save_policy(self.run_dir / f"best-stage-{index}")
            self.state.best[index] = summary["reward"]
        epoch = self.state.epoch
        self.state.next_epoch(stage.epochs)
        self.trainer.save_checkpoint(best=improved)
        if self.trainer.env.is_main:
            print(f"stage {index} ({stage.steps} steps) epoch {epoch}: validation reward {summary['reward']:.3f} "
                  f"(min {summary['reward_min']:.3f}, max {summary['reward_max']:.3f}), fact recall "
                  f"{summary['fact_recall']:.3f}{' (best)' if improved else ''}", flush=True)
        return {"stage": index, "epoch": epoch, "steps": stage.steps, **summary}

    def _save_policy(self, directory: Path) -> Path:
        """A directory loadable by ``ReactiveTransformer.from_pretrained`` + ``RxTokenizer.load``, replaced
        atomically (a kill leaves the previous complete folder or the new one)."""
        with atomic_directory(directory) as temporary:
            self.model.policy.save_pretrained(temporary)
            self.tokenizer.save(temporary)
        return directory


def minibatch(rollout: Rollout, index: torch.Tensor) -> dict[str, Any]:
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
        "write_ids": rollout.write_ids[index, :write_width], "write_mask": write_mask[:, :write_width],
        "encoded": None if rollout.encoded is None else rollout.encoded[index, :, :write_width],
        "stm_prev": rollout.stm_prev[index], "stm_read": rollout.stm_read[index],
        **critic, "advantages": rollout.advantages[index], "returns": rollout.returns[index],
        "values": rollout.values[index], "steps": rollout.steps[index],
    }


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
