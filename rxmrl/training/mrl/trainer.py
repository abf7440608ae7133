"""The MRL loop, written out: for each curriculum stage and epoch, rollout -> advantages -> PPO epochs.

::

    for stage in stages:                                   # e.g. 2 -> 4 -> 8 -> 16 steps
        freeze all but stage.trainable; base lrs = stage.group_lr over [optim] group_lr over [optim] lr
        plan = RolloutPlan.for_stage(cfg, stage)           # what to sample, group, reference member, continue rule
        for epoch in range(stage.epochs):
            for batch of episodes (the last, smaller one too):                         # iteration()
                rollout = collect_rollout(policy, env, batch, plan, reference, critic)  # no grad; env scores
                samples = UPDATES[plan.update](rollout, rewards + fact share)   # advantages, or DMPO's pairs
                for ppo_epoch in range(ppo_epochs):
                    for minibatch in samples.minibatches():
                        STM_t = MemAttn(STM_{t-1}, Encoder(interaction t))      # recomputed: memory learns
                        loss  = samples.loss(minibatch)           # mrl_loss / dmpo_loss, every term named
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

The run itself (directory, lock, resume, checkpoint cadence, NaN guard, metrics, progress, optimiser step)
is :class:`rxmrl.training.harness.RunHarness`, the supervised loop's too: a killed run resumes bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.envs.scoring import build_reward
from rxmrl.model import ReactiveTransformer
from rxmrl.rewards.facts import mix_fact_recall
from rxmrl.runtime import atomic_directory
from rxmrl.training.distributed import all_reduce_gradients, broadcast_parameters, init_distributed
from rxmrl.training.harness import RunHarness, autocast, autocast_dtype, grad_scaler, is_non_finite_sampling
from rxmrl.training.mrl.config import MrlRunConfig, StageConfig
from rxmrl.training.mrl.critic import Critic
from rxmrl.training.mrl.curriculum import CurriculumState, StageData, epoch_batches, load_stage_data, rank_shard
from rxmrl.training.mrl.evaluate import Evaluation, evaluate_policy
from rxmrl.training.mrl.model import CLIPPED_APART, ENCODER_INPUTS, MEMORY_SYSTEM, MrlModel, component_of
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.records import rollout_metrics
from rxmrl.training.mrl.rollout import Rollout, collect_rollout, rollout_env, stage_episodes, stage_word_statistics
from rxmrl.training.mrl.update import UPDATES, Learner, schedule_length
from rxmrl.training.mrl.validation import validation_line, validation_scorers
from rxmrl.training.optim import OptimConfig, build_optimizer, clip_sets, learning_rates, set_trainable
from rxmrl.training.rng import seed_everything
from rxmrl.training.schedule import ScheduleConfig, build_scheduler, set_base_lrs

@dataclass
class MrlResult:
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # one per (stage, epoch)
    timings: dict[str, float] = field(default_factory=dict)  # seconds in total: rollout / reward / update
    iterations: int = 0
    final_dir: Path | None = None


class MrlTrainer(RunHarness):
    """Runs a curriculum on a warm-started policy (see the module docstring); holds ``run_dir``'s lock
    from construction to :meth:`close` (``fit`` closes it)."""

    def __init__(self, config: MrlRunConfig, policy: ReactiveTransformer, tokenizer, *, reward=None,
                 run_dir: str | Path | None = None) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.env = init_distributed()  # episodes are sharded by rank
        self._build_models(policy, reward)
        self.sampling = config.mrl.sampling.build()
        self.eval_sampling = config.mrl.eval_sampling.build()
        self.stage_data = [self._load(stage) for stage in config.stages]
        # one batched env per stage (its steps); every reset plays the episodes the curriculum chose
        self.envs = [self._stage_env(stage, train, self.reward) for stage, (train, _) in
                     zip(config.stages, self.stage_data, strict=True)]
        self.validation_envs = [validation_scorers(config, stage, train, self.model.policy, tokenizer,
                                                   self._stage_env)
                                for stage, (train, _) in zip(config.stages, self.stage_data, strict=True)]
        self.state = CurriculumState(layout=self.layout())
        self._recompute_memory, self._keep_encoded = True, False
        seed_everything(config.seed + self.env.rank)
        self.group_of = component_of(self.model)
        self.optimizer = build_optimizer(self.model, self._adamw(), self.group_of)
        self.scheduler = build_scheduler(self.optimizer, ScheduleConfig(config.optim.warmup_steps, None,
                                                                        config.optim.min_lr_ratio),
                                         max(1, self.total_updates()))
        self.autocast_dtype = autocast_dtype(config.amp, config.amp_dtype, self.env.device)
        self.scaler = grad_scaler(self.autocast_dtype)
        self.open_run(run_dir if run_dir is not None else config.run_dir, config)
        with self.releasing_on_error():  # a refused resume: leave the run directory to the next process
            self._set_trainable(self._trainable(config.stages[0]))
            self.start_run(config)

    def _build_models(self, policy: ReactiveTransformer, reward) -> None:
        """The policy (on this device), its frozen copy the reference, the reward and the critic (if any)."""
        config = self.config
        policy = policy.to(self.env.device)
        torch.manual_seed(config.seed)  # the critic's fresh head (every RNG is reseeded per rank below)
        self.reference = ReactiveTransformer(policy.config).to(self.env.device)
        self.reference.load_state_dict(policy.state_dict())
        self.reference.eval().requires_grad_(False)
        self.reward = reward if reward is not None else build_reward(
            config.reward.preset, config.reward.similarity, self.tokenizer, policy=policy)  # policy-embedding: a copy
        critic = Critic(policy, config.mrl.critic.memory_aware) if config.mrl.uses_critic else None
        self.model = MrlModel(policy, critic).to(self.env.device)
        broadcast_parameters(self.model, self.env)

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
        self.learner = Learner(self.model, self.sampling, self._recompute_memory, self.env.device)

    def layout(self) -> dict[str, Any]:
        """What a saved curriculum position means: a resume with another layout is refused."""
        return {"seed": self.config.seed, "batch_episodes": self.config.mrl.batch_episodes,
                "stages": [[stage.steps, len(train)] for stage, (train, _) in zip(self.config.stages,
                                                                                   self.stage_data, strict=True)]}

    def total_updates(self) -> int:
        """Optimizer steps of the whole curriculum (the schedule's length)."""
        sizes = [(stage, len(train)) for stage, (train, _) in zip(self.config.stages, self.stage_data, strict=True)]
        return schedule_length(self.config.mrl, sizes, self.env.world_size)

    def _enter_stage(self, stage: StageConfig) -> None:
        """The stage's trainable components and base learning rates (the schedule keeps its position)."""
        self._set_trainable(self._trainable(stage))
        set_base_lrs(self.scheduler, [self.config.optim.base_lr(group["group"], stage)
                                      for group in self.optimizer.param_groups])

    # ------------------------------------------------------------------------------ the loop
    def fit(self) -> MrlResult:
        result, cfg, state = MrlResult(), self.config, self.state
        try:
            while state.stage < len(cfg.stages):
                stage = cfg.stages[state.stage]
                self._enter_stage(stage)
                self._epoch(stage, self.stage_data[state.stage][0])
                result.evaluations.append(self._end_epoch(stage))
            result.iterations, result.timings = state.iterations, dict(state.timings)
            result.final_dir = self.run_dir / "final"
            self.check_weights_finite("final model")
            if self.env.is_main:
                self._save_policy(result.final_dir)
        finally:
            self.close()
        return result

    def _epoch(self, stage: StageConfig, train: StageData) -> None:
        """The rest of the current epoch's batches of ``train``, one iteration each; checkpoints on cadence."""
        cfg, state = self.config, self.state
        batches = epoch_batches(len(train), cfg.mrl.batch_episodes, cfg.seed, state.stage, state.epoch)
        bar = self.progress(len(batches), state.batch, f"mrl stage {state.stage} ({stage.steps} steps) epoch "
                                                       f"{state.epoch}")
        while state.batch < len(batches):
            record = self.iteration(stage, train, batches[state.batch])  # this rank's shard
            for key in ("rollout", "reward", "update"):  # in the checkpoint: they add up over resumes
                state.timings[key] = state.timings.get(key, 0.0) + record[f"time/{key}"]
            state.batch += 1
            state.iterations += 1
            bar.update(1)
            bar.set_postfix(reward=f"{record['rollout/reward']:.3f}", refresh=False)
            if self.checkpoint_due(state.iterations, cfg.checkpoint_every):
                self.save_checkpoint()
        bar.close()

    def iteration(self, stage: StageConfig, data: StageData, indices: list[int]) -> dict[str, float]:
        """One iteration, top to bottom: rollout -> advantages -> epochs x minibatches of loss, backward, clip,
        step (this rank's shard of the global batch ``indices``)."""
        clock = time.perf_counter()
        rollout = self.collect(stage, data, rank_shard(indices, self.env.rank, self.env.world_size))
        rollout_seconds = time.perf_counter() - clock
        self.check_finite(float(rollout.rewards.sum()), "reward", weights_at_fault=False)
        rewards = self.training_rewards(rollout)
        clock = time.perf_counter()
        self.model.train()
        samples = UPDATES[self.plan(stage).update](rollout, rewards, self.config.mrl)  # advantages, or pairs
        sums: dict[str, float] = {}
        updates = 0
        for _ in range(self.config.mrl.ppo_epochs):
            for index in samples.minibatches(len(indices), self.env.world_size):
                with autocast(self.autocast_dtype):
                    loss, terms = samples.loss(self.learner, index)  # mrl_loss / dmpo_loss
                self.optimizer_step(loss, terms, sums)
                updates += 1
        record = {f"train/{k}": v / updates for k, v in sums.items()}
        record.update(self._iteration_record(stage, rollout, rewards, rollout_seconds, time.perf_counter() - clock))
        self.metrics.log(self.step, record)
        return record

    def optimizer_step(self, loss: Tensor, terms: dict[str, Tensor], sums: dict[str, float]) -> None:
        """Backward, all-reduce, then the harness's clip (the critic apart), AdamW and schedule step; the
        terms and gradient norms summed into ``sums``."""
        self.check_finite(float(loss.detach()), "loss")
        self.scaler.scale(loss).backward()
        all_reduce_gradients(self.trainable_parameters, self.env)
        norms = self.apply_gradients(self.clip_sets, self.config.optim.grad_clip)
        for key, value in {**terms, **norms}.items():  # the loss itself is terms["loss/total"]
            sums[key] = sums.get(key, 0.0) + float(value)

    def training_rewards(self, rollout: Rollout) -> Tensor:
        """The rewards the advantages are computed from: the env's, with ``reward.fact_weight`` paid for recall."""
        scale = getattr(getattr(self.reward, "config", None), "scale", 10.0)  # a custom reward: the 0-10 range
        return mix_fact_recall(rollout.rewards, rollout.components["fact_recall"], self.config.reward.fact_weight,
                               scale)  # weight 0: the rollout's own rewards, unchanged

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
            self.check_finite(math.nan, "reward", weights_at_fault=False)
            raise
        except RuntimeError as error:  # the sampler met NaN/inf logits: the weights diverged
            if not is_non_finite_sampling(error):
                raise
            self.check_finite(math.nan, "sampling probabilities (the policy's logits)")
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
            self.check_weights_finite(f"best-stage-{index} model")
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
    def checkpoint_state(self) -> dict[str, Any]:
        """MRL's part of a checkpoint: the trainable components and the curriculum position."""
        return {"trainable": self.trainable, "curriculum": self.state.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self._set_trainable(state["trainable"])
        self.state.load_state_dict(state["curriculum"])
