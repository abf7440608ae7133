"""The whole experiment as one typed tree whose sections are the configs of the commands it chains.

``[supervised]`` is :class:`~rxmrl.training.supervised.SupervisedConfig` (``rxmrl train supervised``),
``[mrl]`` is :class:`~rxmrl.training.mrl.config.MrlRunConfig` (``rxmrl train mrl``; its algorithm settings
sit in ``[mrl.mrl]``, its optimiser in ``[mrl.optim]``; ``[mrl.validation]`` defaults to ``[eval]``'s
reward), ``[baseline]`` is :class:`~rxmrl.baseline.train.BaselineConfig` (``rxmrl baseline train``), so a
section of ``experiments/warmstart.toml`` pastes in unchanged. Where each phase writes is not a setting of
its own: the pipeline places every phase under the top-level ``run_dir`` (see
:meth:`PipelineConfig.resolved`) and rejects a section path that disagrees, so a run never writes half of
its outputs somewhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from rxmrl.baseline.train import BaselineConfig
from rxmrl.rewards.presets import check_preset
from rxmrl.training.mrl.config import MrlRunConfig, SamplingSettings, ValidationSettings
from rxmrl.training.supervised import SupervisedConfig

MODELS = ("warm_start", "mrl", "dmpo", "baseline", "oracle", "random")
RXT_MODELS = ("warm_start", "mrl", "dmpo")  # the reactive models (memory to ablate)


@dataclass
class EvalSection:
    """The reward-range evaluation every model plays on the same validation episodes."""

    LIMITS: ClassVar[dict[str, str]] = {"max_new_tokens": ">= 1"}

    source: str = ""  # curriculum source ("": the MRL curriculum's, mrl.data_source)
    steps: int = 8  # follow-ups per episode: 8 gives the published "8+1-step episodes"
    strategy: Literal["cumulative", "long_range"] = "cumulative"  # curriculum config steps-N or steps-N-lr
    split: str = "validation"
    num_episodes: int | None = 64  # the same episodes for every model ("none": the whole split)
    batch_size: int = 32  # episodes stepped together
    reward: str = "default"  # reward preset: default | memory | rxlm | rxnn-len
    # encoder: the bundled sentence encoder (one reward for every model); random-embedding: fixed random token
    # embeddings (the same for every model, unlike each model's own)
    similarity: Literal["encoder", "random-embedding"] = "encoder"
    saved_data: Literal["conversation", "as_written"] = "conversation"  # what each step is scored against
    max_new_tokens: int = 48  # answer length limit of the trained models
    # how the trained models answer ([eval.sampling]): greedy unless asked; the report states it
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(greedy=True))
    # which rows to evaluate (dmpo joins by itself when [dmpo] is enabled)
    models: list[str] = field(default_factory=lambda: [m for m in MODELS if m != "dmpo"])
    device: str = "auto"  # where the models answer: auto (cuda when available) | cpu | cuda | cuda:1 ...

    def __post_init__(self) -> None:
        if self.steps < 1 or (self.num_episodes is not None and self.num_episodes < 1) or self.batch_size < 1:
            raise ValueError(f"steps={self.steps}, num_episodes={self.num_episodes}, batch_size={self.batch_size}:"
                             " expected positive counts")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(f"models {self.models}: expected a non-empty subset of {list(MODELS)}")
        check_preset(self.reward, "eval.reward")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def curriculum_config(self) -> str:
        return f"steps-{self.steps}" + ("-lr" if self.strategy == "long_range" else "")


@dataclass
class AuditSection:
    """The reward audit (``rxmrl reward audit``) on the evaluation's episodes, with its reward settings."""

    enabled: bool = True
    # presets to audit ([]: those the run trains and evaluates with, mrl.reward.preset and eval.reward)
    presets: list[str] = field(default_factory=list)
    # audited with vs without memory (dmpo too when named: it is not added by itself)
    models: list[str] = field(default_factory=lambda: ["warm_start", "mrl"])

    def __post_init__(self) -> None:
        for preset in self.presets:
            check_preset(preset, "audit.presets")
        if any(m not in RXT_MODELS for m in self.models):
            raise ValueError(f"models {self.models}: expected a subset of {list(RXT_MODELS)} (RxT models)")


@dataclass
class RetentionSection:
    """Retention (:mod:`rxmrl.evaluation.retention`) on the evaluation's episodes: the reference conversation
    written into memory, each RxT model with and with a reset memory, MRL paired against its warm start."""

    enabled: bool = True
    # RxT models, the first the baseline (dmpo joins by itself when [dmpo] is enabled)
    models: list[str] = field(default_factory=lambda: ["warm_start", "mrl"])

    def __post_init__(self) -> None:
        if not self.models or any(m not in RXT_MODELS for m in self.models):
            raise ValueError(f"retention.models {self.models}: expected a non-empty subset of {list(RXT_MODELS)}")


@dataclass
class DmpoSection:
    """DMPO beside MRL (``rxmrl train dmpo``): the ``[mrl]`` run -- warm start, curriculum, episodes, epochs,
    learning rates, reward, validation -- with ``mrl.algorithm = "dmpo"``, ``group_size`` sampled answers per
    step and the stages' teacher forcing off (DMPO writes its accepted answer), into ``RUN_DIR/dmpo``. Its
    own settings are ``[mrl.mrl.dmpo]``. Enabled, it is evaluated, retained and reported beside MRL."""

    enabled: bool = False
    group_size: int = 2  # answers sampled per step from one STM, besides the reference answer

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"dmpo.group_size={self.group_size}: expected >= 1")


@dataclass
class LatencySection:
    """Per-turn latency, RxT vs the stateless baseline, as the conversation grows."""

    enabled: bool = True
    turns: int = 9  # interactions of the conversation (saved + 8 follow-ups)
    repeats: int = 3  # timings per turn; the median is kept
    threads: int = 1  # torch threads while timing (1 is steadiest on a shared CPU)

    def __post_init__(self) -> None:
        if self.turns < 1 or self.repeats < 1 or self.threads < 1:
            raise ValueError(f"turns={self.turns}, repeats={self.repeats}, threads={self.threads}: expected >= 1")


@dataclass
class ReportSection:
    LIMITS: ClassVar[dict[str, str]] = {"histogram_bins": ">= 1"}
    histogram_bins: int = 20  # bins of the per-episode reward histograms
    published: bool = True  # show the published rows (clearly labelled) under ours


@dataclass
class PipelineConfig:
    """``rxmrl run CONFIG``: every phase of an experiment (see :mod:`rxmrl.pipeline.run`)."""

    LIMITS: ClassVar[dict[str, str]] = {"seed": ">= 0", "torch_threads": ">= 1"}

    run_dir: Path = Path("runs/quickstart")  # everything the run makes lands here
    seed: int = 0  # seeds the warm start, MRL, the baseline (each one's seed is set from it) and the evaluation
    torch_threads: int | None = None  # torch threads for the whole run ("none": torch's default)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    mrl: MrlRunConfig = field(default_factory=MrlRunConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    audit: AuditSection = field(default_factory=AuditSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    dmpo: DmpoSection = field(default_factory=DmpoSection)
    latency: LatencySection = field(default_factory=LatencySection)
    report: ReportSection = field(default_factory=ReportSection)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        placed = self.phase_paths()
        defaults = {"supervised.run_dir": str(SupervisedConfig().run_dir), "mrl.run_dir": MrlRunConfig().run_dir,
                    "mrl.init": MrlRunConfig().init, "baseline.output_dir": BaselineConfig().output_dir}
        seeds = {"supervised.seed": self.supervised.seed, "mrl.seed": self.mrl.seed,
                 "baseline.sft.seed": self.baseline.sft.seed}
        for key, value in seeds.items():
            if value not in (0, self.seed):
                raise ValueError(f"{key} = {value}: the pipeline seeds every phase from the top-level seed "
                                 f"(now {self.seed}); set seed instead")
        named = [f"{section}.models" for section in ("eval", "audit", "retention")
                 if "dmpo" in getattr(self, section).models]
        if named and not self.dmpo.enabled:
            raise ValueError(f"{named[0]} names dmpo, but dmpo.enabled = false: enable [dmpo] or leave it out")
        for key, value in self._section_paths().items():
            if value not in (defaults[key], placed[key]):
                raise ValueError(f"{key} = {value!r}: the pipeline places this phase at {placed[key]!r} under "
                                 f"run_dir; set run_dir (now {str(self.run_dir)!r}) instead")

    def phase_paths(self) -> dict[str, str]:
        """Where each phase writes (and where MRL starts from), all under ``run_dir``."""
        return {"supervised.run_dir": str(self.run_dir / "warmstart"), "mrl.run_dir": str(self.run_dir / "mrl"),
                "dmpo.run_dir": str(self.run_dir / "dmpo"), "mrl.init": str(self.run_dir / "warmstart" / "stage-4"),
                "baseline.output_dir": str(self.run_dir / "baseline")}

    def _section_paths(self) -> dict[str, str]:
        return {"supervised.run_dir": str(self.supervised.run_dir), "mrl.run_dir": self.mrl.run_dir,
                "mrl.init": self.mrl.init, "baseline.output_dir": self.baseline.output_dir}

    def dmpo_run(self) -> MrlRunConfig:
        """The DMPO run of ``[dmpo]`` (call on :meth:`resolved`): ``[mrl]`` with the DMPO algorithm, its group
        size, no teacher-forced stage and ``RUN_DIR/dmpo`` as its run directory."""
        mrl = self.mrl
        algorithm = dataclasses.replace(mrl.mrl, algorithm="dmpo", group_size=self.dmpo.group_size)
        stages = [dataclasses.replace(stage, teacher_forcing=False) for stage in mrl.stages]
        return dataclasses.replace(mrl, run_dir=self.phase_paths()["dmpo.run_dir"], mrl=algorithm, stages=stages)

    def mrl_validation(self) -> ValidationSettings:
        """``[mrl.validation]``, or -- when it names no preset -- the final evaluation's reward and similarity,
        so the rewards MRL reports while training are the ones ``[eval]`` will score with."""
        if self.mrl.validation.presets:
            return self.mrl.validation
        return dataclasses.replace(self.mrl.validation, presets=[self.eval.reward], similarity=self.eval.similarity)

    def resolved(self) -> PipelineConfig:
        """A copy with each phase's paths under ``run_dir``, the top-level seed in every section, the
        stage-4 warm start as MRL's ``init``, MRL's validation reward and the evaluation's source filled in: the
        configuration the phases actually run with."""
        paths = self.phase_paths()
        supervised = dataclasses.replace(self.supervised, run_dir=Path(paths["supervised.run_dir"]), seed=self.seed)
        mrl = dataclasses.replace(self.mrl, run_dir=paths["mrl.run_dir"], init=paths["mrl.init"], seed=self.seed,
                                  validation=self.mrl_validation())
        baseline = dataclasses.replace(self.baseline, output_dir=paths["baseline.output_dir"],
                                       sft=dataclasses.replace(self.baseline.sft, seed=self.seed))
        evaluation = dataclasses.replace(self.eval, source=self.eval.source or self.mrl.data_source,
                                         models=self._with_dmpo(self.eval.models))
        retention = dataclasses.replace(self.retention, models=self._with_dmpo(self.retention.models))
        return dataclasses.replace(self, supervised=supervised, mrl=mrl, baseline=baseline, eval=evaluation,
                                   retention=retention)

    def _with_dmpo(self, models: list[str]) -> list[str]:
        """``models`` with dmpo after mrl (or at the end) when ``[dmpo]`` is enabled and they leave it out."""
        if not self.dmpo.enabled or "dmpo" in models:
            return list(models)
        at = models.index("mrl") + 1 if "mrl" in models else len(models)
        return [*models[:at], "dmpo", *models[at:]]
