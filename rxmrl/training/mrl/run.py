"""A whole MRL run from a config: load the warm start, evaluate it, train the curriculum, compare."""

from __future__ import annotations

from pathlib import Path

from rxmrl.model import ReactiveTransformer
from rxmrl.training.mrl.config import MrlRunConfig
from rxmrl.training.mrl.evaluate import bootstrap_mean_difference
from rxmrl.training.mrl.trainer import MrlResult, MrlTrainer


def load_warm_start(init: str | Path, tokenizer_path: str | Path = ""):
    """``(policy, tokenizer)`` from a model dir (``ReactiveTransformer.from_pretrained``); the tokenizer from
    ``tokenizer_path``, else the model dir, else the embedded default of the model's vocabulary size."""
    from rxmrl.tokenizer import TOKENIZER_FILE, RxTokenizer, default_tokenizer

    directory = Path(init)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"--init {init}: expected a model dir with config.json + model.safetensors "
                                "(as the supervised stages and MRL's best-stage-N/ and final/ write)")
    policy = ReactiveTransformer.from_pretrained(directory)
    if tokenizer_path:
        tokenizer = RxTokenizer.load(tokenizer_path)
    elif (directory / TOKENIZER_FILE).is_file():
        tokenizer = RxTokenizer.load(directory)
    else:
        tokenizer = default_tokenizer(policy.config.vocab_size)
    if tokenizer.vocab_size != policy.config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, the model's vocab_size is "
                         f"{policy.config.vocab_size}")
    return policy, tokenizer


def run_mrl(config: MrlRunConfig) -> tuple[MrlResult, list[dict]]:
    """Train the curriculum, then compare warm start and MRL on each stage's validation episodes.

    Writes ``RUN_DIR/comparison.json``: per stage, mean/min/max reward and fact recall of both policies, the
    paired bootstrap 95% intervals of the differences in per-episode reward and fact recall, and the
    no-memory ablation of both (STM never written): MRL should beat it if the gain comes from memory, not
    from answer style.
    """
    from rxmrl.config import validate
    from rxmrl.training.distributed import init_distributed, lock_run_dir

    validate(config)
    lock = lock_run_dir(config.run_dir, init_distributed())  # before anything is written or evaluated
    try:
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
    rows = []
    for i, stage in enumerate(config.stages):
        after = trainer.evaluate(i)
        warm_blank = trainer.evaluate(i, policy=trainer.reference, write_memory=False)
        after_blank = trainer.evaluate(i, write_memory=False)
        mean, low, high = bootstrap_mean_difference(after.episode_rewards, warm[i].episode_rewards)
        memory_gain = bootstrap_mean_difference(after.episode_rewards, after_blank.episode_rewards)
        recall = (bootstrap_mean_difference(after.episode_fact_recall, warm[i].episode_fact_recall)
                  if after.episode_fact_recall is not None else (float("nan"),) * 3)
        interval = lambda values: dict(zip(("mean", "ci95_low", "ci95_high"), values))  # noqa: E731
        rows.append({"stage": i, "steps": stage.steps, "strategy": stage.strategy,
                     "warm_start": warm[i].summary(), "mrl": after.summary(),
                     "difference": interval((mean, low, high)), "fact_recall_difference": interval(recall),
                     "warm_start_no_memory": warm_blank.summary(), "mrl_no_memory": after_blank.summary(),
                     "mrl_memory_gain": interval(memory_gain)})
        print(f"stage {i} ({stage.steps} steps, {stage.strategy}): reward warm start "
              f"{warm[i].summary()['reward']:.3f} -> MRL {after.summary()['reward']:.3f}, difference {mean:+.3f} "
              f"[{low:+.3f}, {high:+.3f}] 95% CI; fact recall {warm[i].fact_recall:.3f} -> {after.fact_recall:.3f}, "
              f"difference per episode {recall[0]:+.3f} [{recall[1]:+.3f}, {recall[2]:+.3f}]", flush=True)
        print(f"  no-memory ablation: warm start {warm_blank.summary()['reward']:.3f}, MRL "
              f"{after_blank.summary()['reward']:.3f}; MRL with vs without memory {memory_gain[0]:+.3f} "
              f"[{memory_gain[1]:+.3f}, {memory_gain[2]:+.3f}]", flush=True)
    total = sum(result.timings.values()) or 1.0
    print("time: " + ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in result.timings.items())
          + f" over {result.iterations} iterations", flush=True)
    if trainer.trainer.env.is_main:
        write_json(Path(trainer.run_dir) / "comparison.json",
                   {"stages": rows, "timings": result.timings, "iterations": result.iterations}, nan_as_null=False)
    return result, rows
