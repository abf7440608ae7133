"""Supervised fine-tuning of the stateless baseline with TRL's ``SFTTrainer`` on conversation histories.

Each training row is one turn of a curriculum episode: the whole history up to the turn as the prompt and
the reference answer as the completion (:mod:`rxmrl.baseline.data`). The loss is the mean negative
log-likelihood of the completion tokens only,

    L = - (1 / |C|) * sum_{t in C} log p(x_t | x_<t),     C = answer tokens and [EOS],

so the model learns to answer from the history, not to re-predict the history. Rows are tokenised by us
(``input_ids`` + ``completion_mask``), which TRL takes as they are.

CPU-friendly defaults: fp32, no gradient checkpointing, no dataloader workers, no checkpoints mid-run,
``report_to="none"`` (nothing leaves the machine), one seed for model init, data order and dropout.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from rxmrl.special_tokens import PAD_ID

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel

    from rxmrl.tokenizer import RxTokenizer

RESULT_FILE = "baseline_result.json"
CONFIG_FILE = "baseline.toml"


@dataclass
class BaselineModelSection:
    LIMITS: ClassVar[dict[str, str]] = {"num_layers": ">= 1", "max_length": ">= 1"}
    preset: str = "nano"  # RxT preset whose parameter count the baseline matches
    match: Literal["total", "decoder", "decoder_active"] = "total"  # which RxT count to match
    num_layers: int | None = None  # Llama depth; None: 2 x the preset's layers (decoder + encoder)
    max_length: int = 512  # context: prompt + completion tokens (longer histories are cut from the left)

    def validate(self) -> None:
        from rxmrl.model.config import get_preset

        get_preset(self.preset)


@dataclass
class BaselineDataSection:
    LIMITS: ClassVar[dict[str, str]] = {"steps": ">= 1", "num_episodes": ">= 1", "eval_episodes": ">= 1"}
    source: str = "embedded"  # curriculum source (rxmrl.data.load_curriculum)
    steps: int = 4  # follow-ups per episode (curriculum config steps-N)
    long_range: bool = False  # steps-N-lr episodes
    num_episodes: int = 200  # training episodes (each gives steps + 1 rows)
    eval_episodes: int = 16  # validation episodes for the completion loss before/after training
    include_first: bool = True  # also train on the first interaction (answered from an empty history)


@dataclass
class SFTSection:
    LIMITS: ClassVar[dict[str, str]] = {"max_steps": ">= 1", "batch_size": ">= 1", "grad_accum_steps": ">= 1",
        "learning_rate": "> 0", "warmup_steps": ">= 0", "weight_decay": ">= 0", "max_grad_norm": ">= 0",
        "logging_steps": ">= 1", "seed": ">= 0", "torch_threads": ">= 1"}
    max_steps: int = 150  # optimizer steps
    batch_size: int = 8  # rows per step (per device)
    grad_accum_steps: int = 1
    learning_rate: float = 2e-3
    lr_scheduler: str = "cosine"  # transformers scheduler name
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    seed: int = 0  # the baseline's one seed: model init, the embedded data's generation, data order
    torch_threads: int | None = None  # None: torch's default; 1 is much faster on a busy, shared CPU


@dataclass
class BaselineConfig:
    output_dir: str = "runs/baseline"  # model + tokenizer + config + result land here
    model: BaselineModelSection = field(default_factory=BaselineModelSection)
    data: BaselineDataSection = field(default_factory=BaselineDataSection)
    sft: SFTSection = field(default_factory=SFTSection)


@dataclass
class BaselineResult:
    output_dir: str
    parameters: int  # the stateless model's
    rxt_parameters: int  # the RxT preset's matched count
    loss_before: float  # validation completion loss of the fresh model
    loss_after: float  # ... after SFT
    train_losses: list[float]  # TRL's logged training losses
    train_rows: int
    truncation: str  # TruncationStats.summary() of the training rows
    seconds: float


def load_episodes(data: BaselineDataSection, split: str, num_episodes: int, seed: int):
    """The baseline's episodes of ``split``; ``seed`` generates the embedded source's (the run's one seed)."""
    from rxmrl.data import load_curriculum

    return load_curriculum(data.source, data.steps, split, long_range=data.long_range,
                           num_episodes=num_episodes, seed=seed).episodes


def completion_loss(model: torch.nn.Module, dataset: datasets.Dataset, batch_size: int = 16) -> float:
    """Token-weighted mean NLL of the completion tokens of pre-tokenised rows (``input_ids``,
    ``completion_mask``): the quantity SFT minimises, measured the same way before and after."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            rows = dataset[start:start + batch_size]
            width = max(map(len, rows["input_ids"]))
            ids = torch.full((len(rows["input_ids"]), width), PAD_ID, dtype=torch.long)
            targets = torch.zeros_like(ids, dtype=torch.bool)
            for b, (row, mask) in enumerate(zip(rows["input_ids"], rows["completion_mask"])):
                ids[b, :len(row)] = torch.tensor(row)
                targets[b, :len(row)] = torch.tensor(mask, dtype=torch.bool)
            attention = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows["input_ids"]])[:, None])
            logits = model(input_ids=ids.to(device), attention_mask=attention.long().to(device)).logits
            # position t predicts token t+1: [B, T-1, V] vs [B, T-1]
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), ids[:, 1:].to(device), reduction="none")
            mask = targets[:, 1:].to(device)
            total += float(nll[mask].sum())
            count += int(mask.sum())
    model.train(was_training)
    return total / max(count, 1)


def sft_arguments(config: BaselineConfig, output_dir: Path):
    """The ``SFTConfig`` of a run (TRL 1.16): completion-only loss, fp32, offline logging."""
    from trl import SFTConfig

    sft = config.sft
    return SFTConfig(
        output_dir=str(output_dir / "trainer"),
        max_steps=sft.max_steps,
        per_device_train_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.grad_accum_steps,
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler,
        warmup_steps=sft.warmup_steps,
        weight_decay=sft.weight_decay,
        max_grad_norm=sft.max_grad_norm,
        logging_steps=sft.logging_steps,
        seed=sft.seed,
        data_seed=sft.seed,
        completion_only_loss=True,
        max_length=config.model.max_length,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        push_to_hub=False,
    )


def train_baseline(config: BaselineConfig, tokenizer: RxTokenizer | None = None, verbose: bool = True
                   ) -> BaselineResult:
    """Build the size-matched model, SFT it on history prompts with TRL, save model + tokenizer + result
    (holding ``output_dir``'s lock: one process at a time writes there)."""
    from rxmrl.config import validate
    from rxmrl.runtime import RunLock, torch_threads

    validate(config)
    with RunLock(config.output_dir), torch_threads(config.sft.torch_threads):
        return _train_baseline(config, tokenizer, verbose)


def _train_baseline(config: BaselineConfig, tokenizer: RxTokenizer | None, verbose: bool) -> BaselineResult:
    from trl import SFTTrainer

    from rxmrl.baseline.data import history_dataset
    from rxmrl.baseline.model import build_stateless_model, rxt_target_parameters
    from rxmrl.config import save_config
    from rxmrl.model import get_preset
    from rxmrl.runtime import staged_files, write_json
    from rxmrl.data import default_tokenizer

    started = time.perf_counter()
    say = print if verbose else (lambda *_: None)
    tokenizer = tokenizer or default_tokenizer()
    output_dir = Path(config.output_dir)
    rxt = get_preset(config.model.preset, vocab_size=tokenizer.vocab_size)
    model = build_stateless_model(rxt, config.model.match, config.model.max_length, config.model.num_layers,
                                  seed=config.sft.seed)
    parameters = sum(p.numel() for p in model.parameters())
    target = rxt_target_parameters(rxt, config.model.match)
    say(f"stateless Llama: {parameters:,} parameters vs RxT {config.model.preset} {config.model.match} "
        f"{target:,} ({(parameters - target) / target:+.2%})")

    data = config.data
    train_set, stats = history_dataset(tokenizer, load_episodes(data, "train", data.num_episodes, config.sft.seed),
                                       config.model.max_length, data.steps, data.include_first)
    eval_set, _ = history_dataset(tokenizer, load_episodes(data, "validation", data.eval_episodes, config.sft.seed),
                                  config.model.max_length, data.steps, data.include_first)
    say(f"history rows: {stats.summary()}")
    loss_before = completion_loss(model, eval_set)
    say(f"validation completion loss before SFT: {loss_before:.4f}")

    trainer = SFTTrainer(model=model, args=sft_arguments(config, output_dir), train_dataset=train_set,
                         processing_class=tokenizer.to_hf())
    trainer.train()
    train_losses = [float(r["loss"]) for r in trainer.state.log_history if "loss" in r]
    loss_after = completion_loss(model, eval_set)
    say(f"training loss (logged every {config.sft.logging_steps} steps): "
        + " ".join(f"{loss:.3f}" for loss in train_losses))
    say(f"validation completion loss after SFT: {loss_after:.4f}")

    with staged_files(output_dir) as staging:  # each file replaced atomically (trainer/ stays beside them)
        model.save_pretrained(staging)
    tokenizer.save(output_dir)
    save_config(config, output_dir / CONFIG_FILE)
    result = BaselineResult(str(output_dir), parameters, target, loss_before, loss_after, train_losses,
                            len(train_set), stats.summary(), time.perf_counter() - started)
    write_json(output_dir / RESULT_FILE, asdict(result), nan_as_null=False)
    say(f"saved model + tokenizer to {output_dir} in {result.seconds:.1f} s")
    if not math.isfinite(loss_after):
        raise FloatingPointError(f"validation loss after SFT is {loss_after}: training diverged")
    return result


def load_baseline(directory: str | Path, device: str = "cpu") -> tuple[PreTrainedModel, RxTokenizer]:
    """The model and tokenizer a :func:`train_baseline` run saved, the folder checked before the model is
    built (:mod:`rxmrl.model.folder`): a folder that is not a Llama baseline, weights of another shape or a
    tokenizer of another vocabulary are refused in one line (an RxT ``config.json`` read as a Llama's would
    build a 6.5-billion-parameter model from the Llama defaults)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rxmrl.model.folder import (CONFIG_FILE, ModelFolderError, check_weights, expected_shapes, inspect_folder,
                                    load_tokenizer, require_kind)

    folder = inspect_folder(directory, "baseline")
    require_kind(folder, "baseline", "baseline")
    if folder.config["model_type"] != "llama":
        raise ModelFolderError(f"{folder.path / CONFIG_FILE}: model_type {folder.config['model_type']!r}, expected "
                               "'llama' (the baseline rxmrl baseline train writes)")
    try:
        config = LlamaConfig.from_dict(folder.config)
        check_weights(folder.weights, expected_shapes(lambda: LlamaForCausalLM(config)))
    except (TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, ModelFolderError):
            raise
        raise ModelFolderError(f"{folder.path / CONFIG_FILE}: describes no buildable Llama ({error})") from error
    tokenizer = load_tokenizer(folder.path, config.vocab_size)
    model = LlamaForCausalLM.from_pretrained(str(folder.path), local_files_only=True).to(device)
    model.eval()
    return model, tokenizer
