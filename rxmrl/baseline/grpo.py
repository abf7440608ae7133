"""Optional RL stage of the stateless baseline: TRL's ``GRPOTrainer`` with the memory-retention reward.

Each prompt is a follow-up turn with its whole history (:mod:`rxmrl.baseline.data`), rendered as text with
the special tokens written out (``[BOS][Q]...[A]``; our tokenizer reads them back to the same ids). The
reward is :class:`rxmrl.rewards.MemoryRetentionReward` through :func:`rxmrl.rewards.as_trl_reward`,
scored against the follow-up's reference answer and the saved data of the step as the cumulative
strategy defines it (step 0: the first interaction; step ``i``: follow-up ``i - 1``), all in ``standard``
mode. GRPO (Shao et al., 2024) samples ``G`` answers per prompt and uses the group-normalised reward

    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)

as each answer's advantage in a clipped policy-gradient loss (``beta`` > 0 adds a KL term to the SFT model).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rxmrl.baseline.data import fit_history, query_ids, turn_ids
from rxmrl.baseline.train import BaselineDataSection, load_episodes
from rxmrl.data.schema import Episode
from rxmrl.rewards import WordStatistics

if TYPE_CHECKING:
    import datasets

    from rxmrl.tokenizer import RxTokenizer

GRPO_RESULT_FILE = "grpo_result.json"


@dataclass
class GRPOSection:
    max_steps: int = 20  # optimizer steps
    num_generations: int = 4  # G answers sampled per prompt (the group)
    batch_size: int = 8  # completions per step (a multiple of num_generations)
    max_completion_length: int = 48  # answer tokens sampled
    max_prompt_tokens: int = 448  # history is cut from the left to this
    learning_rate: float = 1e-4
    beta: float = 0.0  # KL coefficient to the reference (SFT) model; 0 loads no reference copy
    temperature: float = 1.0
    reward_preset: str = "default"  # rxmrl.rewards.PRESETS
    # sentence encoder, a frozen copy of the model's token embeddings, or fixed random ones
    similarity: Literal["encoder", "policy-embedding", "random-embedding"] = "encoder"
    logging_steps: int = 5
    seed: int = 0  # the run's one seed: the trainer, data order and the embedded data's generation
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        from rxmrl.rewards import check_preset

        check_preset(self.reward_preset, "grpo.reward_preset")


@dataclass
class GRPORunConfig:
    checkpoint: str = "runs/baseline"  # an SFT output dir (`rxmrl baseline train`)
    output_dir: str = "runs/baseline-grpo"
    data: BaselineDataSection = field(default_factory=BaselineDataSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)


@dataclass
class GRPOResult:
    output_dir: str
    rewards: list[float]  # mean reward per logging interval
    seconds: float


def grpo_dataset(tokenizer: RxTokenizer, episodes: Iterable[Episode], max_prompt_tokens: int,
                 steps: int | None = None) -> datasets.Dataset:
    """Rows ``prompt`` (history text ending ``[A]``), ``reference``, ``saved``, ``mode``, ``query`` and
    ``history`` (the earlier interactions' texts, for memory tokens) per follow-up."""
    import datasets

    rows: dict[str, list] = {"prompt": [], "reference": [], "saved": [], "mode": [], "query": [], "history": []}
    for episode in episodes:
        interactions = episode.all_interactions()[: None if steps is None else steps + 1]
        turns = [turn_ids(tokenizer, i) for i in interactions]
        for index in range(1, len(interactions)):
            prompt = fit_history(turns[:index], query_ids(tokenizer, interactions[index].query), max_prompt_tokens)
            saved = interactions[index - 1]  # the interaction written just before this step
            rows["prompt"].append(tokenizer.decode(prompt.ids, skip_special_tokens=False))
            rows["reference"].append(interactions[index].answer)
            rows["saved"].append(f"{saved.query} {saved.answer}")
            rows["mode"].append("standard")
            rows["query"].append(interactions[index].query)
            rows["history"].append([f"{i.query} {i.answer}" for i in interactions[:index]])
    return datasets.Dataset.from_dict(rows)


def train_baseline_grpo(config: GRPORunConfig, verbose: bool = True) -> GRPOResult:
    """GRPO on history prompts from an SFT checkpoint; saves model + tokenizer + result to ``output_dir``
    (holding its lock)."""
    from rxmrl.runtime import RunLock, torch_threads

    with RunLock(config.output_dir), torch_threads(config.grpo.torch_threads):
        return _train_baseline_grpo(config, verbose)


def _train_baseline_grpo(config: GRPORunConfig, verbose: bool) -> GRPOResult:
    from trl import GRPOConfig, GRPOTrainer

    from rxmrl.baseline.train import load_baseline
    from rxmrl.envs.scoring import build_reward
    from rxmrl.rewards import as_trl_reward
    from rxmrl.runtime import staged_files, write_json

    section = config.grpo
    started = time.perf_counter()
    model, tokenizer = load_baseline(config.checkpoint)
    model.train()
    data = config.data
    episodes = load_episodes(data, "train", data.num_episodes, section.seed)
    dataset = grpo_dataset(tokenizer, episodes, section.max_prompt_tokens, data.steps)
    statistics = WordStatistics.from_episodes(episodes)  # the memory tokens' template words
    output_dir = Path(config.output_dir)
    args = GRPOConfig(
        output_dir=str(output_dir / "trainer"), max_steps=section.max_steps,
        per_device_train_batch_size=section.batch_size, num_generations=section.num_generations,
        max_completion_length=section.max_completion_length, learning_rate=section.learning_rate,
        beta=section.beta, temperature=section.temperature, logging_steps=section.logging_steps,
        seed=section.seed, data_seed=section.seed, bf16=False, fp16=False, activation_checkpointing=False,
        dataloader_pin_memory=False, save_strategy="no", report_to="none", disable_tqdm=True, push_to_hub=False,
    )
    # the one reward builder; policy-embedding copies this model's embedding before it trains
    reward = as_trl_reward(build_reward(section.reward_preset, section.similarity, tokenizer, policy=model),
                           statistics=statistics)
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args,
                          train_dataset=dataset, processing_class=tokenizer.to_hf())
    with warnings.catch_warnings():  # TRL 1.16 itself reads transformers' deprecated alias; nothing of ours
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer.train()
    rewards = [float(r["reward"]) for r in trainer.state.log_history if "reward" in r]
    if verbose:
        print("mean reward per logging interval: " + " ".join(f"{r:.3f}" for r in rewards))
    with staged_files(output_dir) as staging:  # each file replaced atomically
        model.save_pretrained(staging)
    tokenizer.save(output_dir)
    result = GRPOResult(str(output_dir), rewards, time.perf_counter() - started)
    write_json(output_dir / GRPO_RESULT_FILE, asdict(result), nan_as_null=False)
    return result

