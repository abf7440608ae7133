"""The supervised warm start: stages 1-4 in order, one checkpoint per stage.

    config = load_config(SupervisedConfig, "experiments/warmstart.toml")
    reports = run_supervised(config)                 # or stages=[1, 3]
    model = ReactiveTransformer.from_pretrained(config.run_dir / "stage-4")
    tokenizer = RxTokenizer.load(config.run_dir / "stage-4")

Run directory::

    RUN_DIR/stage-N/            model (config.json + model.safetensors), tokenizer, config.toml, stage.json
    RUN_DIR/stage-N/run/        the Trainer's metrics.jsonl, TensorBoard events and resumable checkpoints

Each stage starts from the weights of the latest earlier stage found in ``RUN_DIR`` (else ``init``, else a
fresh model of the preset with the tokenizer's vocabulary). A stage whose ``stage.json`` exists is done and
skipped; an interrupted one resumes from its last checkpoint, so re-running the same command continues.
Its ``seconds`` count every attempt (:class:`rxmrl.runtime.WallClock`), and the run holds ``RUN_DIR``'s lock.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rxmrl.training.stages.joint import InteractionStageConfig, JointStageConfig
from rxmrl.training.stages.memory_attention import MemoryAttentionStageConfig
from rxmrl.training.stages.memory_aware import MemoryAwareStageConfig

STAGES = (1, 2, 3, 4)
STAGE_NAMES = {1: "joint LM pre-training", 2: "joint interaction SFT", 3: "memory attention pre-training",
               4: "supervised memory-aware training"}
SUMMARY_FILE = "stage.json"


@dataclass
class ModelSection:
    preset: str = "nano"  # a preset of rxmrl.model.config (vocab_size comes from the tokenizer)
    overrides: dict[str, int | float | bool | str] = field(default_factory=dict)  # e.g. {stm_slots = 16}

    def validate(self) -> None:
        model_preset(self.preset, self.overrides)  # a bad preset or size fails at load, not after training


def model_preset(name: str, overrides: dict[str, Any] | None = None):
    """``rxmrl.model.get_preset`` with a one-line error naming the preset or the override at fault."""
    from rxmrl.model.config import PRESETS, RxTConfig

    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not an RxT preset; expected one of {sorted(PRESETS)}")
    fields = sorted(RxTConfig.__dataclass_fields__)
    for key in sorted(set(overrides or {}) - set(fields)):
        close = difflib.get_close_matches(key, fields, n=1)
        raise ValueError(f"overrides.{key} is not an RxTConfig field" + (f"; did you mean {close[0]!r}?" if close
                                                                          else f"; expected one of {fields}"))
    return PRESETS[name].replace(**(overrides or {}))


@dataclass
class DataSection:
    LIMITS: ClassVar[dict[str, str]] = {"tokenizer_vocab_size": ">= 1", "curriculum_steps": ">= 1",
        "num_validation_episodes": ">= 1", "seed": ">= 0"}
    source: str = "embedded"  # curriculum source: "embedded", a local folder/file, or a hub id
    tokenizer: str = "default"  # "default" (embedded tokenizer) or a path to a tokenizer.json / folder
    tokenizer_vocab_size: int = 4096  # for the default tokenizer
    curriculum_steps: int = 6  # steps-N config of stages 3 and 4
    curriculum_split: str = "supervised"  # split of stages 3 and 4
    validation_split: str = "validation"  # split the memory probe reads after stage 4
    num_validation_episodes: int = 64
    seed: int = 0  # for the embedded generator


@dataclass
class SupervisedConfig:
    LIMITS: ClassVar[dict[str, str]] = {"seed": ">= 0"}
    run_dir: Path = Path("runs/warmstart")
    stages: list[int] = field(default_factory=lambda: list(STAGES))
    seed: int = 0  # model initialisation
    init: Path | None = None  # a from_pretrained directory to start from instead of a fresh model
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    stage1: JointStageConfig = field(default_factory=JointStageConfig)
    stage2: InteractionStageConfig = field(default_factory=lambda: InteractionStageConfig(num_examples=4000))
    stage3: MemoryAttentionStageConfig = field(default_factory=MemoryAttentionStageConfig)
    stage4: MemoryAwareStageConfig = field(default_factory=MemoryAwareStageConfig)

    def __post_init__(self) -> None:
        check_stages(self.stages)
        curriculum = self.stage4.follow_up_curriculum
        if curriculum and curriculum[-1][1] > self.data.curriculum_steps:
            raise ValueError(f"follow_up_curriculum={curriculum} trains on {curriculum[-1][1]} follow-ups; "
                             f"the episodes have data.curriculum_steps={self.data.curriculum_steps}")


@dataclass
class StageReport:
    stage: int
    seconds: float  # wall time of this stage's training (data preparation included)
    steps: int
    final_loss: float | None
    directory: Path
    memory: dict[str, float] | None = None  # memory_matters after stage 4
    skipped: bool = False  # found complete in the run directory


def check_stages(stages: Sequence[int]) -> list[int]:
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ValueError(f"stages {list(stages)}: expected a non-empty subset of {list(STAGES)}")
    return sorted(set(stages))


def stage_dir(run_dir: str | Path, stage: int) -> Path:
    return Path(run_dir) / f"stage-{stage}"


def is_complete(directory: Path) -> bool:
    return (directory / SUMMARY_FILE).is_file()


def load_tokenizer(data: DataSection):
    from rxmrl.data import default_tokenizer
    from rxmrl.tokenizer import RxTokenizer

    if data.tokenizer == "default":
        return default_tokenizer(data.tokenizer_vocab_size)
    return RxTokenizer.load(data.tokenizer)


def starting_model(config: SupervisedConfig, stage: int, vocab_size: int):
    """Weights of the latest complete earlier stage, else ``init``, else a fresh preset model."""
    from rxmrl.model import ReactiveTransformer
    from rxmrl.training.rng import seed_everything

    for earlier in range(stage - 1, 0, -1):
        if is_complete(stage_dir(config.run_dir, earlier)):
            return ReactiveTransformer.from_pretrained(stage_dir(config.run_dir, earlier)), f"stage-{earlier}"
    if config.init is not None:
        from rxmrl.model.rxt import load_rxt

        return load_rxt(config.init, role="init"), str(config.init)
    seed_everything(config.seed)
    preset = model_preset(config.model.preset, {**config.model.overrides, "vocab_size": vocab_size})
    return ReactiveTransformer(preset), f"fresh {config.model.preset}"


def stage_rows(config: SupervisedConfig, stage: int, tokenizer) -> list[Any]:
    """Tokenised training rows of a stage (stories, interactions or episodes)."""
    from rxmrl.data import load_curriculum, load_interactions, load_stories
    from rxmrl.training.stages.batching import episode_rows, interaction_rows, story_rows

    data = config.data
    if stage == 1:
        texts = load_stories(data.source, "train", num_stories=config.stage1.num_examples, seed=data.seed)
        return story_rows(tokenizer, texts, config.stage1.max_length)
    if stage == 2:
        pairs = load_interactions(data.source, "train", num_interactions=config.stage2.num_examples,
                                  seed=data.seed)
        return interaction_rows(tokenizer, pairs, config.stage2.max_length, config.stage2.answer_only)
    settings = config.stage3 if stage == 3 else config.stage4
    episodes = load_curriculum(data.source, data.curriculum_steps, data.curriculum_split,
                               num_episodes=settings.num_episodes, seed=data.seed)
    rows = episode_rows(tokenizer, episodes, settings.max_length)
    if stage == 4 and settings.fact_weight != 1:
        from rxmrl.training.stages.facts import weight_fact_tokens

        rows = weight_fact_tokens(tokenizer, episodes.episodes, rows, settings.fact_weight, settings.max_length)
    return rows


def validation_episodes(config: SupervisedConfig):
    from rxmrl.data import load_curriculum

    data = config.data
    return load_curriculum(data.source, data.curriculum_steps, data.validation_split,
                           num_episodes=data.num_validation_episodes, seed=data.seed).episodes


def run_stage(config: SupervisedConfig, stage: int, model, tokenizer, env) -> tuple[Any, dict | None]:
    """Train ``model`` with one stage; returns the Trainer's result and, after stage 4, the memory probe."""
    from rxmrl.training.memory_probe import memory_matters
    from rxmrl.training.stages.joint import train_joint
    from rxmrl.training.stages.memory_attention import train_memory_attention
    from rxmrl.training.stages.memory_aware import train_memory_aware

    rows = stage_rows(config, stage, tokenizer)
    run_dir = stage_dir(config.run_dir, stage) / "run"
    desc = f"stage {stage}: {STAGE_NAMES[stage]}"
    common = {"run_dir": run_dir, "desc": desc, "run_config": config}
    if stage in (1, 2):
        return train_joint(model, rows, getattr(config, f"stage{stage}"), env, **common), None
    if stage == 3:
        return train_memory_attention(model, rows, config.stage3, env, **common), None
    validation = validation_episodes(config)
    probe_every = config.stage4.probe_every

    def eval_fn(m) -> dict[str, float]:
        result = memory_matters(m, tokenizer, validation, max_length=config.stage4.max_length)
        return {"loss": result["loss_with_memory"], **result}

    result = train_memory_aware(model, rows, config.stage4, env, eval_fn=eval_fn if probe_every else None,
                                **common)
    return result, memory_matters(model, tokenizer, validation, max_length=config.stage4.max_length)


def save_stage(directory: Path, model, tokenizer, config: SupervisedConfig, report: dict[str, Any]) -> None:
    """``from_pretrained``-loadable weights + tokenizer + resolved config; ``stage.json`` last (= complete).

    Each file is written atomically; the folder also holds the stage's ``run/``, so it is not replaced whole.
    """
    from rxmrl.config import save_config
    from rxmrl.runtime import write_json

    model.save_pretrained(directory)
    tokenizer.save(directory)
    save_config(config, directory / "config.toml")
    write_json(directory / SUMMARY_FILE, report, nan_as_null=False)


def check_init(config: SupervisedConfig) -> None:
    """A bad ``init`` refused before any stage prepares its data: the folder checked (kind, weights against
    its ``config.json``) and its vocabulary the run's tokenizer's (the stages train on that tokenizer's ids)."""
    from rxmrl.model.folder import ModelFolderError
    from rxmrl.model.rxt import checked_rxt_config

    vocab_size = checked_rxt_config(config.init, "init").vocab_size
    tokens = load_tokenizer(config.data).vocab_size
    if vocab_size != tokens:
        raise ModelFolderError(f"init {config.init} has vocab_size {vocab_size}, the run's tokenizer "
                               f"(data.tokenizer = {config.data.tokenizer!r}) has {tokens} tokens")


def run_supervised(config: SupervisedConfig, stages: Sequence[int] | None = None, env=None) -> list[StageReport]:
    """Run the chosen stages (default: ``config.stages``) in order; see the module docstring."""
    from rxmrl.training.distributed import init_distributed, lock_run_dir

    from rxmrl.config import validate

    validate(config)
    if config.init is not None:
        check_init(config)
    env = env or init_distributed()
    chosen = check_stages(stages if stages is not None else config.stages)
    lock = lock_run_dir(config.run_dir, env)
    try:
        refuse_unresumable_stages(config, chosen)
        return _run_stages(config, chosen, env)
    finally:
        if lock is not None:
            lock.release()


def refuse_unresumable_stages(config: SupervisedConfig, chosen: list[int]) -> None:
    """A stage that resumes from its checkpoints keeps the settings it started with (:mod:`rxmrl.resume`)."""
    from rxmrl.resume import has_checkpoints, refuse_unresumable_changes

    for stage in chosen:
        run_dir = stage_dir(config.run_dir, stage) / "run"
        if not is_complete(stage_dir(config.run_dir, stage)) and has_checkpoints(run_dir):
            refuse_unresumable_changes(run_dir / "config.toml", config)


def _run_stages(config: SupervisedConfig, chosen: list[int], env) -> list[StageReport]:
    from rxmrl.runtime import WallClock
    from rxmrl.training.distributed import barrier

    tokenizer = load_tokenizer(config.data)
    reports, model = [], None
    for stage in chosen:
        directory = stage_dir(config.run_dir, stage)
        if is_complete(directory):
            summary = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
            reports.append(StageReport(stage, summary["seconds"], summary["steps"], summary["final_loss"],
                                       directory, summary.get("memory"), skipped=True))
            model = None  # the next stage loads this one from disk
            continue
        clock = WallClock(directory / "attempts.json") if env.is_main else contextlib.nullcontext()
        with clock:
            if model is None:
                model, origin = starting_model(config, stage, tokenizer.vocab_size)
                if env.is_main:
                    print(f"stage {stage} ({STAGE_NAMES[stage]}) starts from {origin}", flush=True)
            result, memory = run_stage(config, stage, model, tokenizer, env)
            if env.is_main:
                seconds = clock.seconds()
                report = StageReport(stage, seconds, result.step, result.final_loss, directory, memory)
                save_stage(directory, model, tokenizer, config,
                           {"stage": stage, "name": STAGE_NAMES[stage], "seconds": seconds, "steps": result.step,
                            "attempts": len(clock.attempts), "final_loss": result.final_loss,
                            "last_metrics": result.last_metrics, "memory": memory})
                clock.finish()
                print(format_report(report), flush=True)
            else:
                report = StageReport(stage, 0.0, result.step, result.final_loss, directory, memory)
        barrier(env)
        reports.append(report)
    return reports


def format_report(report: StageReport) -> str:
    loss = "n/a" if report.final_loss is None else f"{report.final_loss:.4f}"
    line = (f"stage {report.stage} ({STAGE_NAMES[report.stage]}): {report.steps} steps, final loss {loss}, "
            f"{report.seconds:.1f} s{' (already done)' if report.skipped else ''} -> {report.directory}")
    if report.memory:
        m = report.memory
        line += (f"\n  memory matters on validation follow-ups: loss {m['loss_with_memory']:.4f} with memory vs "
                 f"{m['loss_reset_memory']:.4f} with a reset STM; token accuracy {m['acc_with_memory']:.3f} vs "
                 f"{m['acc_reset_memory']:.3f}\n  on fact tokens: loss {m['fact_loss_with_memory']:.4f} vs "
                 f"{m['fact_loss_reset_memory']:.4f}; accuracy {m['fact_acc_with_memory']:.3f} vs "
                 f"{m['fact_acc_reset_memory']:.3f} ({int(m['fact_tokens'])} of {int(m['tokens'])} answer tokens)"
                 f"\n  gap (reset − with) {m['loss_gap']:.4f} [{m['loss_gap_low']:.4f}, {m['loss_gap_high']:.4f}], "
                 f"on fact tokens {m['fact_loss_gap']:.4f} [{m['fact_loss_gap_low']:.4f}, "
                 f"{m['fact_loss_gap_high']:.4f}] (95% bootstrap over validation episodes)")
    return line
