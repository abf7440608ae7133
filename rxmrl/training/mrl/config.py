"""Every knob of MRL in one typed tree: objective, rollout, critic, curriculum stages, optimiser, validation, run.

``MrlRunConfig`` is what ``rxmrl train mrl --config FILE`` loads (TOML, ``--set key=value`` overrides);
each field carries a comment saying what it does, and every field is read by a run (a test holds it to
that). Defaults follow the published IMPO/PPO values. In ``rxmrl run``'s config the whole tree is the
``[mrl]`` section: ``[optim]`` here is ``[mrl.optim]`` there, ``[[stages]]`` is ``[[mrl.stages]]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

COMPONENTS = ("embedding", "decoder", "memory_cross_attention", "encoder", "memory_attention", "stm", "critic")


def check_components(lrs: dict[str, float], key: str) -> None:
    """One line naming ``key`` when a learning-rate table names an unknown component or a negative rate."""
    unknown = sorted(set(lrs) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"{key} names unknown component(s) {unknown}; known: {list(COMPONENTS)}")
    negative = {name: lr for name, lr in lrs.items() if lr < 0}
    if negative:
        raise ValueError(f"{key} has negative learning rate(s) {negative}; expected rates >= 0")


@dataclass
class ObjectiveConfig:
    """Coefficients of the loss assembled by :func:`rxmrl.training.mrl.objective.mrl_loss`."""

    LIMITS: ClassVar[dict[str, str]] = {"clip": "> 0", "entropy_coef": ">= 0", "reference_kl_coef": ">= 0",
        "stabilisation_kl_coef": ">= 0", "memory_coef": ">= 0", "value_coef": ">= 0", "value_clip": "> 0",
        "moe_aux_coef": ">= 0", "memory_credit": ">= 0"}

    clip: float = 0.2  # PPO ratio clip epsilon
    entropy_coef: float = 0.01  # entropy bonus c_H (mean over real answer tokens)
    reference_kl_coef: float = 0.05  # KL(pi_theta || pi_ref) to the frozen warm-start policy
    stabilisation_kl_coef: float = 0.01  # IMPO policy stabilisation: KL to the policy that acted (same episode)
    memory_coef: float = 1e-4  # IMPO memory regularisation c_mem (times sqrt(step+1))
    value_coef: float = 0.5  # weight of the critic's loss
    value_clip: float = 20.0  # clipped value loss: V_old +- value_clip (reward units, 0-10 scale)
    moe_aux_coef: float = 0.0  # MoE load-balancing auxiliary loss weight
    # policy-term token weights 1 + memory_credit · clamp(log pi_ref(token | STM) - log pi_ref(token | blank STM),
    # 0, 10) (a weighted token mean): the tokens memory made likelier carry the step's advantage; 0: all alike.
    # Costs one more reference pass per rollout (the answers scored from a never-written STM)
    memory_credit: float = 0.0

    def __post_init__(self) -> None:
        if self.memory_credit < 0:
            raise ValueError(f"memory_credit={self.memory_credit}: expected >= 0")


@dataclass
class AdvantageConfig:
    """How per-step advantages are computed from rewards and the critic's values."""

    LIMITS: ClassVar[dict[str, str]] = {"gamma": "in [0, 1]", "lam": "in [0, 1]"}

    # impo: A_t = r_t - V_t;  gae: GAE(gamma, lam) over steps (both with a critic);  grpo: group-normalised
    # reward;  rloo: leave-one-out baseline (both over mrl.group_size answers sampled from one STM, no critic)
    estimator: Literal["impo", "gae", "grpo", "rloo"] = "impo"
    gamma: float = 0.99  # GAE discount
    lam: float = 0.95  # GAE lambda
    normalize: Literal["batch", "step", "none"] = "batch"  # whiten over the batch, per step index, or not


@dataclass
class SamplingSettings:
    """The distribution answers are sampled from; log-probs for the ratio use the same one."""

    LIMITS: ClassVar[dict[str, str]] = {"temperature": "> 0", "top_k": ">= 1", "top_p": "in (0, 1]"}

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

    MOVED: ClassVar[dict[str, str]] = {"lr": "the critic's learning rate is optim.group_lr.critic"}
    LIMITS: ClassVar[dict[str, str]] = {"max_len": ">= 1"}

    max_len: int = 512  # tokens of (saved interaction + current query) the critic reads (longer than the policy's)
    memory_aware: bool = False  # add a cross-attention from the critic's states to the (detached) STM


@dataclass
class StageConfig:
    """One curriculum stage."""

    LIMITS: ClassVar[dict[str, str]] = {"num_episodes": ">= 1", "eval_episodes": ">= 1", "epochs": ">= 1",
        "trainable": "non-empty"}

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
    # this stage's learning rates per component, over [optim] group_lr and lr (see OptimSettings)
    group_lr: dict[str, float] = field(default_factory=dict)
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
        check_components(self.group_lr, "group_lr")


@dataclass
class DmpoConfig:
    """Direct Memory and Preference Optimization (``algorithm = "dmpo"``): preference pairs drawn from one STM
    per step, the loss of :func:`rxmrl.training.mrl.dmpo.dmpo_loss`."""

    beta: float = 0.1  # DPO temperature: how far the log-ratio margin may move from the reference's
    # reward points (0-10 scale) the accepted answer must beat the rejected one by; closer pairs are left out
    min_margin: float = 1.0
    # the candidates of a step: the reference answer and mrl.group_size answers sampled from the STM, or the
    # sampled answers only
    candidates: Literal["reference+samples", "samples"] = "reference+samples"
    # online: the policy being trained samples the candidates of every iteration; offline: the frozen warm
    # start samples them, so the pairs are the warm start's and never follow the policy. Online is the default:
    # its rejected answers are the mistakes the policy makes now, where offline ones go stale as it moves
    pairs: Literal["online", "offline"] = "online"
    # weight of the anchored term |log pi_theta(y_n) - log pi_ref(y_n)| on the neutral (middle-reward)
    # candidate; 0: plain DPO. Needs three candidates a step
    anchor_coef: float = 0.0
    # token weights 1 + memory_credit · max(0, log pi_ref(token | STM) - log pi_ref(token | blank STM)): the
    # tokens memory makes likelier decide a pair (dmpo.memory_credit); 0: every token alike
    memory_credit: float = 0.0

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.min_margin < 0 or self.anchor_coef < 0 or self.memory_credit < 0:
            raise ValueError(f"beta={self.beta}, min_margin={self.min_margin}, anchor_coef={self.anchor_coef}, "
                             f"memory_credit={self.memory_credit}: expected beta > 0 and the others >= 0")


@dataclass
class MrlConfig:
    """The RL algorithm: rollouts, PPO epochs (or DMPO passes), objective, advantages."""

    LIMITS: ClassVar[dict[str, str]] = {"max_interaction_len": ">= 1"}

    # ppo: the clipped policy-gradient loss (mrl_loss) with advantages.estimator; dmpo: preference pairs from
    # one STM per step (mrl.dmpo, the loss dmpo_loss), no advantages and no critic
    algorithm: Literal["ppo", "dmpo"] = "ppo"

    batch_episodes: int = 16  # episodes collected per rollout (one iteration)
    minibatch_size: int = 32  # (episode, step) samples per optimizer step; the last, smaller one trains too
    ppo_epochs: int = 10  # passes over each rollout
    max_answer_tokens: int = 48  # generation limit per answer
    max_interaction_len: int = 256  # interactions written into memory are cut to this (keeping [EOS])
    # answers sampled per step from the identical STM and query (grpo / rloo groups: >= 2; impo / gae: 1); the
    # episode continues with one of them chosen uniformly at random, never by its reward
    group_size: int = 1
    # how the loss reaches the memory writes (ppo): "write" recomputes each sample's STM_t from the recorded
    # STM_{t-1}, so gradient crosses one write; "episode" trains whole episodes per minibatch and recomputes
    # STM_1..STM_t from the episode's STM_0, so answer t's loss reaches writes 1..t (backprop through time)
    memory_backprop: Literal["write", "episode"] = "write"
    # grpo / rloo: the step's reference answer joins each group as one more member, scored by the reward like
    # the samples; its behaviour log-probs are the policy's own at collection time, so its tokens enter the PPO
    # ratio as a demonstration weighted by its group advantage. The episode still goes on with a sampled member
    reference_member: bool = False
    sampling: SamplingSettings = field(default_factory=SamplingSettings)  # behaviour policy
    eval_sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(greedy=True))  # evaluation
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    advantages: AdvantageConfig = field(default_factory=AdvantageConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    dmpo: DmpoConfig = field(default_factory=DmpoConfig)

    def __post_init__(self) -> None:
        for name in ("batch_episodes", "minibatch_size", "ppo_epochs", "max_answer_tokens", "group_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}, expected >= 1")

    @property
    def uses_critic(self) -> bool:
        """impo and gae compare a reward with the critic's value; grpo and rloo with the answer's group; dmpo
        compares answers by their rewards alone."""
        return self.algorithm == "ppo" and self.advantages.estimator in ("impo", "gae")

    @property
    def with_reference(self) -> bool:
        """Whether the reference answer joins each step's candidates (dmpo's ``reference+samples``, or a group
        estimator's ``reference_member``)."""
        if self.algorithm == "dmpo":
            return self.dmpo.candidates == "reference+samples"
        return self.reference_member

    @property
    def candidates_per_step(self) -> int:
        """Answers of one (episode, step) in a rollout: the group, plus the reference answer (``with_reference``)."""
        return self.group_size + self.with_reference

    @property
    def samples_per_step(self) -> int:
        """What one (episode, step) adds to the update's samples: its answers (ppo) or its one pair (dmpo)."""
        return 1 if self.algorithm == "dmpo" else self.candidates_per_step

    def validate(self) -> None:
        if self.algorithm == "dmpo":
            if self.reference_member:
                raise ValueError("reference_member is for the group estimators; dmpo takes the reference answer "
                                 "through dmpo.candidates = 'reference+samples'")
            if self.memory_backprop != "write":
                raise ValueError("memory_backprop='episode' is for algorithm='ppo'; dmpo scores each pair from one "
                                 "recomputed write")
            if self.candidates_per_step < 2:
                raise ValueError(f"dmpo pairs two answers of one STM: with dmpo.candidates={self.dmpo.candidates!r} "
                                 f"set group_size >= 2 (got {self.group_size})")
            if self.dmpo.anchor_coef > 0 and self.candidates_per_step < 3:
                raise ValueError(f"dmpo.anchor_coef={self.dmpo.anchor_coef} anchors a third (neutral) answer: "
                                 f"raise group_size (now {self.candidates_per_step} candidates a step)")
            return
        if self.reference_member and self.uses_critic:
            raise ValueError(f"reference_member joins the reference answer to a group: use advantages.estimator grpo "
                             f"or rloo (got {self.advantages.estimator!r})")
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
class OptimSettings:
    """AdamW over the named components, their learning rates (per component and per stage), gradient
    clipping and the schedule: the one home of MRL's optimiser settings.

    The learning rate of component ``c`` in stage ``s`` at optimizer step ``t`` of the curriculum::

        lr(c, s, t) = base(c, s) · m(t),     base(c, s) = stages[s].group_lr[c]  if set, else
                                                          group_lr[c]           if set, else  lr

    with ``m`` the warm-up + cosine multiplier of :mod:`rxmrl.training.schedule` (``warmup_steps``,
    ``min_lr_ratio``) over the optimizer steps of the whole curriculum; the defaults keep it at 1. The
    critic's gradients are clipped to ``grad_clip`` on their own and the policy's together, so the value
    loss's large gradient never shrinks the policy's step.
    """

    lr: float = 5e-5  # base learning rate of every component without one of its own
    weight_decay: float = 0.0  # AdamW's decoupled decay of matrices (never norms, biases, embeddings)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's moment decay rates
    eps: float = 1e-8  # AdamW's denominator floor
    # component -> learning rate (embedding, decoder, memory_cross_attention, encoder, memory_attention, stm,
    # critic). A table replaces this default as a whole: name the critic in it. The critic's rate is unused by
    # grpo / rloo, which train no critic.
    group_lr: dict[str, float] = field(default_factory=lambda: {"critic": 1e-4})
    grad_clip: float | None = 1.0  # max L2 norm of the critic's gradients and of the policy's ("none": no clip)
    warmup_steps: int = 0  # optimizer steps of linear warm-up of every rate
    min_lr_ratio: float = 1.0  # cosine floor as a share of each rate (1.0: constant after the warm-up)

    def __post_init__(self) -> None:
        if self.lr < 0 or self.weight_decay < 0 or self.eps <= 0:
            raise ValueError(f"lr={self.lr}, weight_decay={self.weight_decay}, eps={self.eps}: expected lr >= 0, "
                             "weight_decay >= 0, eps > 0")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas={list(self.betas)}: expected two decay rates in [0, 1)")
        check_components(self.group_lr, "group_lr")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip={self.grad_clip}: expected a norm > 0, or \"none\" for no clipping")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: expected >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio}: expected a share in [0, 1]")

    def base_lr(self, component: str, stage: StageConfig) -> float:
        """``base(c, s)`` of the class docstring."""
        return stage.group_lr.get(component, self.group_lr.get(component, self.lr))


@dataclass
class ValidationSettings:
    """How the validation episodes after every epoch are scored, and what picks a stage's best checkpoint.

    The episodes are played once (``mrl.eval_sampling``) and scored by the training reward (``[reward]``:
    summary key ``reward``) and by each preset here over ``similarity`` (key ``reward/<preset>``), so
    validation can report the reward the final evaluation uses (``rxmrl run`` makes these its ``[eval]``
    reward and similarity unless set).
    """

    presets: list[str] = field(default_factory=list)  # rewards validation scores with, besides the training one
    similarity: Literal["encoder", "policy-embedding", "random-embedding"] = "encoder"  # of those presets
    # the summary key that picks each stage's best-stage-N: reward (the training reward), reward/<preset>
    # (one of presets), fact_recall or held_fact_recall; "": reward/<first preset>, or reward without presets
    select: str = ""
    # write the reference answers into memory while validating (the retention protocol of
    # rxmrl.evaluation.retention): every fact the follow-ups ask about is then in memory, so fact recall
    # measures what memory carries; false: the policy's own answers, as the final reward-range evaluation
    teacher_forcing: bool = False

    def __post_init__(self) -> None:
        from rxmrl.rewards import check_preset

        for preset in self.presets:
            check_preset(preset, "validation.presets")
        if len(set(self.presets)) != len(self.presets):
            raise ValueError(f"validation.presets={self.presets}: a preset is named twice")
        choices = ["reward", *(f"reward/{p}" for p in self.presets), "fact_recall", "held_fact_recall"]
        if self.select and self.select not in choices:
            raise ValueError(f"validation.select={self.select!r}: expected one of {choices} (reward/<preset> needs "
                             "the preset in validation.presets)")

    @property
    def selected(self) -> str:
        """The summary key that picks the best checkpoint (``select`` with its default resolved)."""
        return self.select or (f"reward/{self.presets[0]}" if self.presets else "reward")


@dataclass
class MrlRunConfig:
    """A whole MRL run: warm start, data, curriculum, algorithm, optimiser, validation and run settings."""

    MOVED: ClassVar[dict[str, str]] = {
        "loop": "MRL runs its own loop: grad_clip is in [optim]; checkpoint_every, keep_last, progress, "
                "tensorboard, amp and amp_dtype are top-level keys; the other loop keys were never read",
        "schedule": "the schedule is optim.warmup_steps and optim.min_lr_ratio (over the whole curriculum)",
    }

    LIMITS: ClassVar[dict[str, str]] = {"seed": ">= 0"}

    init: str = ""  # warm-start checkpoint: a model dir (config.json + model.safetensors) or a checkpoint dir
    tokenizer: str = ""  # tokenizer path ("": the dir of init if it has one, else the embedded default)
    run_dir: str = "runs/mrl"  # metrics, checkpoints, config
    data_source: str = "embedded"  # curriculum source (embedded | folder | file | hub id)
    seed: int = 0  # seeds everything (rollout sampling, STM noise, data order)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig(steps=2), StageConfig(steps=4)])
    mrl: MrlConfig = field(default_factory=MrlConfig)
    reward: RewardSettings = field(default_factory=RewardSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    checkpoint_every: int = 1  # iterations (rollout + update) between checkpoints; every epoch's end saves one
    keep_last: int = 3  # step checkpoints kept (the stage's best is kept besides)
    progress: bool = True  # tqdm bar with the live reward (on a terminal)
    tensorboard: bool = True  # TensorBoard events beside metrics.jsonl
    amp: bool = True  # autocast the update's forward on CUDA (ignored on CPU)
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  # float16 adds a gradient scaler

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages = []: expected at least one curriculum stage, e.g. [[stages]] steps = 2")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={self.checkpoint_every}: expected >= 1 (iterations between "
                             "checkpoints; the end of every epoch saves one too)")
        if self.keep_last < 1:
            raise ValueError(f"keep_last={self.keep_last}: expected >= 1 step checkpoints to keep")

    def validate(self) -> None:
        if self.mrl.algorithm == "dmpo":
            forced = [i for i, stage in enumerate(self.stages) if stage.teacher_forcing]
            if forced:
                raise ValueError(f"stages.{forced[0]}.teacher_forcing = true: dmpo writes the accepted answer into "
                                 "memory (with the default candidates that is the reference whenever it wins); set "
                                 "teacher_forcing = false")
        for i in range(1, len(self.stages)):
            if self.stages[i].steps <= self.stages[i - 1].steps:
                raise ValueError(f"stages.{i}.steps={self.stages[i].steps} does not exceed stages.{i - 1}.steps="
                                 f"{self.stages[i - 1].steps}: curriculum stages must grow (e.g. 2, 4, 8); give a "
                                 "stage more epochs to train one length longer")
