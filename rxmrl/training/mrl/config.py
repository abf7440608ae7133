"""Every knob of MRL in one typed tree: objective, rollout, critic, curriculum stages, run.

``MrlRunConfig`` is what ``rxmrl train mrl --config FILE`` loads (TOML, ``--set key=value`` overrides);
each field carries a comment saying what it does. Defaults follow the published IMPO/PPO values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rxmrl.training.loop import LoopConfig
from rxmrl.training.optim import OptimConfig
from rxmrl.training.schedule import ScheduleConfig

COMPONENTS = ("embedding", "decoder", "memory_cross_attention", "encoder", "memory_attention", "stm", "critic")


@dataclass
class ObjectiveConfig:
    """Coefficients of the loss assembled by :func:`rxmrl.training.mrl.objective.mrl_loss`."""

    clip: float = 0.2  # PPO ratio clip epsilon
    entropy_coef: float = 0.01  # entropy bonus c_H (mean over real answer tokens)
    reference_kl_coef: float = 0.05  # KL(pi_theta || pi_ref) to the frozen warm-start policy
    stabilisation_kl_coef: float = 0.01  # IMPO policy stabilisation: KL to the policy that acted (same episode)
    memory_coef: float = 1e-4  # IMPO memory regularisation c_mem (times sqrt(step+1))
    value_coef: float = 0.5  # weight of the critic's loss
    value_clip: float = 20.0  # clipped value loss: V_old +- value_clip (reward units, 0-10 scale)
    moe_aux_coef: float = 0.0  # MoE load-balancing auxiliary loss weight


@dataclass
class AdvantageConfig:
    """How per-step advantages are computed from rewards and the critic's values."""

    # impo: A_t = r_t - V_t;  gae: GAE(gamma, lam) over steps (both with a critic);  grpo: group-normalised
    # reward;  rloo: leave-one-out baseline (both over mrl.group_size answers sampled from one STM, no critic)
    estimator: Literal["impo", "gae", "grpo", "rloo"] = "impo"
    gamma: float = 0.99  # GAE discount
    lam: float = 0.95  # GAE lambda
    normalize: Literal["batch", "step", "none"] = "batch"  # whiten over the batch, per step index, or not


@dataclass
class SamplingSettings:
    """The distribution answers are sampled from; log-probs for the ratio use the same one."""

    temperature: float = 1.0  # > 0
    top_k: int | None = None  # keep the k most likely tokens ("none": off)
    top_p: float | None = None  # nucleus ("none": off)
    greedy: bool = False  # argmax (evaluation)

    def build(self):
        from rxmrl.model import SamplingConfig

        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.greedy)


@dataclass
class CriticConfig:
    """The value model: an encoder copied from the warm start plus a value head."""

    max_len: int = 512  # tokens of (saved interaction + current query) the critic reads (longer than the policy's)
    memory_aware: bool = False  # add a cross-attention from the critic's states to the (detached) STM
    lr: float = 1e-4  # critic learning rate


@dataclass
class StageConfig:
    """One curriculum stage."""

    steps: int = 2  # follow-ups per episode (the curriculum step)
    strategy: Literal["cumulative", "long_range", "mixed"] = "cumulative"  # mixed: long-range with long_range_ratio
    long_range_ratio: float = 0.5  # share of long-range episodes when strategy = "mixed"
    data_steps: int | None = None  # steps-N subset to draw episodes from ("none": = steps; may be larger)
    split: str = "train"  # training split
    eval_split: str = "validation"  # evaluated after every epoch
    num_episodes: int | None = None  # training episodes (embedded size / first rows); "none": all
    eval_episodes: int | None = 64  # validation episodes per evaluation; "none": all
    epochs: int = 1  # passes over the stage's episodes
    trainable: list[str] = field(default_factory=lambda: ["memory_cross_attention", "memory_attention", "critic"])
    group_lr: dict[str, float] = field(default_factory=dict)  # per-component learning rates for this stage
    teacher_forcing: bool = False  # write the reference answer (not the agent's) into memory
    random_reset_ratio: float = 0.0  # probability an episode keeps the previous episode's STM instead of a reset

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}, expected >= 1")
        if self.strategy != "cumulative" and self.steps < 2:
            raise ValueError(f"strategy={self.strategy!r} needs steps >= 2 (topic switch + final question)")
        if self.data_steps is not None and self.data_steps < self.steps:
            raise ValueError(f"data_steps={self.data_steps} < steps={self.steps}: episodes would be too short")
        unknown = set(self.trainable) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"trainable names unknown component(s) {sorted(unknown)}; known: {list(COMPONENTS)}")
        if not 0.0 <= self.random_reset_ratio <= 1.0 or not 0.0 <= self.long_range_ratio <= 1.0:
            raise ValueError("random_reset_ratio and long_range_ratio must lie in [0, 1]")


@dataclass
class MrlConfig:
    """The RL algorithm: rollouts, PPO epochs, objective, advantages."""

    batch_episodes: int = 16  # episodes collected per rollout (one iteration)
    minibatch_size: int = 32  # (episode, step) samples per optimizer step; the last, smaller one trains too
    ppo_epochs: int = 10  # passes over each rollout
    max_answer_tokens: int = 48  # generation limit per answer
    max_interaction_len: int = 256  # interactions written into memory are cut to this (keeping [EOS])
    # answers sampled per step from the identical STM and query (grpo / rloo groups: >= 2; impo / gae: 1); the
    # episode continues with one of them chosen uniformly at random, never by its reward
    group_size: int = 1
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # behaviour policy
    eval_sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(greedy=True))  # evaluation
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)

    def __post_init__(self) -> None:
        for name in ("batch_episodes", "minibatch_size", "ppo_epochs", "max_answer_tokens", "group_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}, expected >= 1")

    @property
    def uses_critic(self) -> bool:
        """impo and gae compare a reward with the critic's value; grpo and rloo with the answer's group."""
        return self.advantages.estimator in ("impo", "gae")

    def validate(self) -> None:
        if self.uses_critic and self.group_size != 1:
            raise ValueError(f"advantages.estimator={self.advantages.estimator!r} baselines each answer with the "
                             f"critic: set group_size = 1 (got {self.group_size}), or use grpo / rloo")
        if not self.uses_critic and self.group_size < 2:
            raise ValueError(f"advantages.estimator={self.advantages.estimator!r} compares the answers sampled "
                             f"from one STM: set group_size >= 2 (got {self.group_size})")


@dataclass
class RewardSettings:
    """The reward the rollouts are scored with (built by :func:`rxmrl.envs.scoring.build_reward`)."""

    preset: str = "default"  # rxmrl.rewards preset: default | memory | rxlm | rxnn-len
    # policy-embedding: mean of a frozen copy of the warm start's embedding; encoder: the bundled MiniLM sentence
    # encoder; random-embedding: fixed random token embeddings
    similarity: Literal["policy-embedding", "encoder", "random-embedding"] = "policy-embedding"
    # what each step is scored against: the conversation as the data has it, or as written into memory (the
    # reference design, which pays a constant answer for agreeing with itself; see rxmrl.envs.MrlEnv)
    saved_data: Literal["conversation", "as_written"] = "conversation"
    # share of the *training* reward paid for fact recall: (1 − w)·reward + w·scale·recall on steps whose data
    # has facts (rxmrl.rewards.mix_fact_recall); validation always reports the plain reward and recall apart
    fact_weight: float = 0.0

    def __post_init__(self) -> None:
        from rxmrl.rewards import check_preset

        check_preset(self.preset, "reward.preset")
        if not 0.0 <= self.fact_weight <= 1.0:
            raise ValueError(f"reward.fact_weight={self.fact_weight}: expected a share in [0, 1]")


@dataclass
class MrlRunConfig:
    """A whole MRL run: warm start, data, curriculum, algorithm and the shared loop's settings."""

    init: str = ""  # warm-start checkpoint: a model dir (config.json + model.safetensors) or a checkpoint dir
    tokenizer: str = ""  # tokenizer path ("": the dir of init if it has one, else the embedded default)
    run_dir: str = "runs/mrl"  # metrics, checkpoints, config
    data_source: str = "embedded"  # curriculum source (embedded | folder | file | hub id)
    seed: int = 0  # seeds everything (rollout sampling, STM noise, data order)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig(steps=2), StageConfig(steps=4)])
    mrl: MrlConfig = field(default_factory=MrlConfig)
    reward: RewardSettings = field(default_factory=RewardSettings)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_steps=0, min_lr_ratio=1.0))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(max_steps=1, grad_clip=1.0, log_every=1,
                                                                clip_apart=("critic",)))
    checkpoint_every: int = 1  # iterations (rollout + update) between checkpoints
    progress: bool = True  # tqdm bar with the live reward

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages = []: expected at least one curriculum stage, e.g. [[stages]] steps = 2")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every}: expected >= 1 (iterations between "
                             "checkpoints; the end of every epoch saves one too)")

    def validate(self) -> None:
        for i in range(1, len(self.stages)):
            if self.stages[i].steps <= self.stages[i - 1].steps:
                raise ValueError(f"stages.{i}.steps={self.stages[i].steps} does not exceed stages.{i - 1}.steps="
                                 f"{self.stages[i - 1].steps}: curriculum stages must grow (e.g. 2, 4, 8); give a "
                                 "stage more epochs to train one length longer")
