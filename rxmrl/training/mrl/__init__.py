"""Memory Reinforcement Learning: a memory-aware actor-critic (PPO / IMPO) over a curriculum.

One concept per module::

    config      MrlRunConfig (run) > StageConfig (curriculum stage), MrlConfig (algorithm) > Objective/...,
                OptimSettings (the optimiser: per-component and per-stage rates), ValidationSettings
    plan        RolloutPlan: what a rollout samples and records, per algorithm (built from config + stage)
    rollout     episodes played in the batched env: STM before/after, behaviour + reference log-probs, values
    critic      value model: warm-start encoder over (saved interaction + query) [+ STM], value head
    advantages  IMPO's r - V, or GAE; normalisation; explained variance
    objective   mrl_loss: the one function assembling the loss (equations in its docstring)
    curriculum  stage data, epoch order (last smaller batch included), the resumable position
    evaluate    validation reward per episode and step, fact recall, bootstrap interval
    validation  the rewards validation scores with besides the training one, and its printed line
    update      Learner (STM recomputed, values), PpoSamples / DmpoPairs: minibatches and each one's loss
    model       MrlModel: policy + critic, the optimiser's component names
    records     what an iteration logs about its rollout
    trainer     MrlTrainer: stages -> epochs -> rollout -> advantages -> PPO epochs over minibatches, its own loop
                on the run harness (rxmrl.training.harness)

Usage::

    policy = ReactiveTransformer.from_pretrained("runs/quickstart/stage-4")
    trainer = MrlTrainer(load_config(MrlRunConfig, "experiments/mrl_quickstart.toml"), policy, tokenizer)
    result = trainer.fit()      # resumes by itself from run_dir's latest checkpoint
"""

from rxmrl.training.mrl.advantages import compute_advantages, explained_variance
from rxmrl.training.mrl.config import (
    AdvantageConfig, CriticConfig, MrlConfig, MrlRunConfig, ObjectiveConfig, OptimSettings, RewardSettings,
    SamplingSettings, StageConfig, ValidationSettings,
)
from rxmrl.training.mrl.critic import Critic
from rxmrl.training.mrl.curriculum import CurriculumState, StageData, epoch_batches, load_stage_data
from rxmrl.training.mrl.evaluate import Evaluation, bootstrap_mean_difference, evaluate_policy
from rxmrl.training.mrl.objective import LossInputs, mrl_loss
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.rollout import Rollout, collect_rollout, rollout_env, stage_episodes
from rxmrl.training.mrl.trainer import MrlModel, MrlResult, MrlTrainer, component_of

__all__ = [
    "AdvantageConfig", "Critic", "CriticConfig", "CurriculumState", "Evaluation", "LossInputs",
    "MrlConfig", "MrlModel", "MrlResult", "MrlRunConfig", "MrlTrainer", "ObjectiveConfig", "OptimSettings",
    "RewardSettings", "ValidationSettings",
    "Rollout", "RolloutPlan", "SamplingSettings", "StageConfig", "StageData", "bootstrap_mean_difference",
    "collect_rollout", "component_of", "compute_advantages", "epoch_batches",
    "evaluate_policy", "explained_variance", "load_stage_data", "mrl_loss", "rollout_env", "stage_episodes",
]
