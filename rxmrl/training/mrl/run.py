"""A whole MRL run from a config: load the warm start, evaluate it, train the curriculum, compare."""

from __future__ import annotations

from pathlib import Path

from rxmrl.training.mrl.config import MrlRunConfig
from rxmrl.model.sampling import describe_sampling
from rxmrl.training.mrl.evaluate import Evaluation, bootstrap_mean_difference
from rxmrl.training.mrl.trainer import MrlResult, MrlTrainer
from rxmrl.training.mrl.validation import training_reward_label


# MRL trains memory: a warm start needs memory attention pre-trained (stage 3) or later
INIT_NEEDS = (3, "MRL (trained memory attention)")


def load_warm_start(init: str | Path, tokenizer_path: str | Path = ""):
    """``(policy, tokenizer)`` from a checked model dir (:func:`rxmrl.model.folder.load_rxt`); the tokenizer from
    ``tokenizer_path``, else the model dir, else the embedded default of the model's vocabulary size."""
    from rxmrl.model.folder import ModelFolderError, folder_tokenizer, load_tokenizer
    from rxmrl.model.rxt import load_rxt
    from rxmrl.data import default_tokenizer

    policy = load_rxt(init, role="--init", min_stage=INIT_NEEDS)
    vocab_size = policy.config.vocab_size
    tokenizer = (load_tokenizer(tokenizer_path, vocab_size) if tokenizer_path else
                 folder_tokenizer(init, vocab_size, default=lambda: default_tokenizer(vocab_size)))
    if tokenizer.vocab_size != vocab_size:
        raise ModelFolderError(f"the tokenizer of --init {init} has {tokenizer.vocab_size} tokens, the model's "
                               f"vocab_size is {vocab_size}")
    return policy, tokenizer


def run_mrl(config: MrlRunConfig) -> tuple[MrlResult, list[dict]]:
    """Train the curriculum, then compare warm start and MRL on each stage's validation episodes.

    Writes ``RUN_DIR/comparison.json``: per stage, mean/min/max reward and fact recall of both policies, the
    paired bootstrap 95% intervals of the differences in per-episode reward (the training reward and each
    ``[validation]`` preset) and fact recall, and the no-memory ablation of both (STM never written): MRL
    should beat it if the gain comes from memory, not from answer style. It names the training reward, the
    validation presets and similarity, and the sampling the validation answers were drawn with.
    """
    from rxmrl.config import validate
    from rxmrl.model.rxt import checked_rxt_config
    from rxmrl.resume import check_init_apart, has_checkpoints, refuse_unresumable_changes
    from rxmrl.training.distributed import init_distributed, lock_run_dir

    validate(config)
    check_init_apart(config.init, config.run_dir)
    checked_rxt_config(config.init, "--init", INIT_NEEDS)  # a bad warm start refused before the run directory
    lock = lock_run_dir(config.run_dir, init_distributed())  # before anything is written or evaluated
    try:
        if has_checkpoints(config.run_dir):  # a resume: the same warm start, data and curriculum
            refuse_unresumable_changes(Path(config.run_dir) / "config.toml", config,
                                       finished=(Path(config.run_dir) / "final").is_dir())
        return _run_mrl(config)
    finally:
        if lock is not None:
            lock.release()


def _run_mrl(config: MrlRunConfig) -> tuple[MrlResult, list[dict]]:
    from rxmrl.runtime import write_json

    policy, tokenizer = load_warm_start(config.init, config.tokenizer)
    trainer = MrlTrainer(config, policy, tokenizer)
    # The frozen reference is the warm start, also when the run resumed from a checkpoint.
    warm = {i: trainer.evaluate(i, policy=trainer.reference) for i in range(len(config.stages))}
    result = trainer.fit()
    rows = [compare_stage(trainer, i, warm[i]) for i in range(len(config.stages))]
    total = sum(result.timings.values()) or 1.0
    print("time: " + ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in result.timings.items())
          + f" over {result.iterations} iterations", flush=True)
    if trainer.env.is_main:
        scoring = {"training_reward": training_reward_label(config), "validation_presets": config.validation.presets,
                   "validation_similarity": config.validation.similarity,
                   "sampling": describe_sampling(trainer.eval_sampling),
                   "memory_writes": "reference" if config.validation.teacher_forcing else "policy",
                   "algorithm": config.mrl.algorithm}
        write_json(Path(trainer.run_dir) / "comparison.json",
                   {"stages": rows, **scoring, "timings": result.timings, "iterations": result.iterations},
                   nan_as_null=False)
    return result, rows


def compare_stage(trainer: MrlTrainer, index: int, warm: Evaluation) -> dict:
    """One stage's row of ``comparison.json``: both policies' summaries (with and without memory) and the
    paired bootstrap intervals of MRL - warm start per episode, for the training reward (``difference``),
    every ``[validation]`` preset (``differences["reward/<preset>"]``) and fact recall; printed too."""
    stage = trainer.config.stages[index]
    after = trainer.evaluate(index)
    warm_blank = trainer.evaluate(index, policy=trainer.reference, write_memory=False, presets=False)
    after_blank = trainer.evaluate(index, write_memory=False, presets=False)  # the training reward only
    interval = lambda values: dict(zip(("mean", "ci95_low", "ci95_high"), values))  # noqa: E731
    difference = bootstrap_mean_difference(after.episode_rewards, warm.episode_rewards)
    by_preset = {f"reward/{name}": interval(bootstrap_mean_difference(values, warm.episode_rewards_by[name]))
                 for name, values in after.episode_rewards_by.items()}
    memory_gain = bootstrap_mean_difference(after.episode_rewards, after_blank.episode_rewards)
    nan = (float("nan"),) * 3
    recall = (bootstrap_mean_difference(after.episode_fact_recall, warm.episode_fact_recall)
              if after.episode_fact_recall is not None else nan)
    recall_gap = (bootstrap_mean_difference(after.episode_fact_recall, after_blank.episode_fact_recall)
                  if after.episode_fact_recall is not None else nan)  # what MRL's memory carries
    label = training_reward_label(trainer.config)
    name = "DMPO" if trainer.config.mrl.algorithm == "dmpo" else "MRL"  # what trained the policy
    print(f"stage {index} ({stage.steps} steps, {stage.strategy}): {label} warm start {warm.summary()['reward']:.3f} "
          f"-> {name} {after.summary()['reward']:.3f}, difference {_signed(difference)} 95% CI; fact recall "
          f"{warm.fact_recall:.3f} -> {after.fact_recall:.3f}, difference per episode {_signed(recall)}", flush=True)
    for key, stat in by_preset.items():
        print(f"  {key} ({trainer.config.validation.similarity}): warm start {warm.summary()[key]:.3f} -> {name} "
              f"{after.summary()[key]:.3f}, difference {_signed(tuple(stat.values()))}", flush=True)
    print(f"  no-memory ablation: warm start {warm_blank.summary()['reward']:.3f}, {name} "
          f"{after_blank.summary()['reward']:.3f}; {name} with vs without memory {_signed(memory_gain)}, fact recall "
          f"{_signed(recall_gap)}", flush=True)
    return {"stage": index, "steps": stage.steps, "strategy": stage.strategy,
            "warm_start": warm.summary(), "mrl": after.summary(), "difference": interval(difference),
            "differences": by_preset, "fact_recall_difference": interval(recall),
            "warm_start_no_memory": warm_blank.summary(), "mrl_no_memory": after_blank.summary(),
            "mrl_memory_gain": interval(memory_gain), "mrl_memory_recall_gain": interval(recall_gap)}


def _signed(values: tuple[float, float, float]) -> str:
    mean, low, high = values
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
