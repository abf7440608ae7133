"""Stage 4: supervised memory-aware training over curriculum episodes.

Episodes ``I_0 .. I_N`` (saved interaction, then ``N`` follow-ups), ``B`` of them stepped in lockstep:

    STM_0 ~ initial STM (fresh random memory)
    for t = 1 .. N:
        STM_t = MemAttn(STM_{t-1}, Encoder(I_{t-1}))           # write the previous interaction
        L_t   = CE(Decoder(I_t, memory = STM_t))               # answer tokens of I_t and its [EOS] (weighted)
    L = mean_t L_t + λ·mean_t L_MoE,t

Gradients flow through the whole chain (decoder → STM_t → memory attention and encoder → STM_{t-1} ...),
so the memory system learns to *write* what the decoder later needs to *read*. The follow-up answers of the
curriculum repeat facts of earlier interactions, so their loss falls below what a fresh memory allows only
when memory works (:func:`rxmrl.training.memory_probe.memory_matters` measures exactly that).

Why facts are weighted: reading a fact out of memory is a late, sudden skill, like an induction head, and
fact tokens are ~7% of the answer tokens, so under a plain mean their gradient is small next to the rest of
the language-modelling loss and the skill appears within a stage's budget on some seeds only. ``fact_weight``
w counts them more, a weighted mean over answer tokens j::

    L_t = sum_j w_j · CE_j / sum_j w_j,    w_j = w on fact tokens (the curriculum's ``facts`` column,
                                            :mod:`rxmrl.training.stages.facts`), 1 elsewhere

The weight a config uses, and the seeds it was measured on, are in its header (``experiments/warmstart.toml``).
The model needed three fixes before memory mattered at all: memory keys/values normalised in the decoder
(``memory_kv_norm``), noise relative to the encoder states' RMS in stages 1-2, and a per-slot identity in
memory attention's queries.

Follow-up curriculum (``follow_up_curriculum``): a memory model learns to read a short history before a long
one (the Recurrent Memory Transformer trains over a growing number of segments for accuracy and stability).
From step ``s_k`` on, the stage trains on the first ``n_k`` follow-ups of each episode only::

    follow_ups(step) = n_k  for the last k with s_k <= step         e.g. [[0, 2], [400, 4], [800, 6]]

A step costs about ``n`` encoder writes and decoder passes, so a short history early is also a cheap step:
the same wall time buys more updates where the memory-reading skill has to appear.

Gate bias (``gate_bias``): memory attention's residual gate ``G = sigmoid(w·(STM + U) + b)`` writes
``STM' = (1 - G)·STM + G·U``; stage 3 teaches it to replace about half of memory at every write. Setting
``b`` negative at the start of stage 4 makes early writes keep the old memory (gates biased "to remember", as
in the Block-Recurrent Transformer), so what an earlier interaction wrote survives the next writes while the
reader learns to find it.

Gradual unfreezing: the decoder's memory cross-attention trains from the start and the decoder's own layers
after ``unfreeze_decoder_at`` steps (default 0: together; later, the loss can first fall only by reading
memory); memory attention (with a learned initial STM) joins after ``unfreeze_memory_attention_at`` steps (or
epochs, see ``unfreeze_unit``), the encoder and the shared embedding after ``unfreeze_encoder_at``. A
component that is frozen stays bit-identical. Starting with the reader lets it adapt to the STM that the
pre-trained memory attention writes before that writer moves, so early, noisy decoder gradients do not wreck
the memory system.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from rxmrl.model.memory import set_gate_bias
from rxmrl.training.distributed import DistEnv
from rxmrl.training.loop import EvalFn, Evaluation, RunRecord, Trainer, TrainResult
from rxmrl.training.stages.batching import Row, pad_episodes, projected_next_token_loss, trim
from rxmrl.training.stages.common import StageLoop, make_trainer, model_groups, unwrap_model


@dataclass
class MemoryAwareStageConfig(StageLoop):
    """Stage 4."""

    LIMITS: ClassVar[dict[str, str]] = {"num_episodes": ">= 1", "max_length": ">= 1", "moe_aux_weight": ">= 0"}

    num_episodes: int | None = None  # episodes of the curriculum split to train on (None: all)
    max_length: int = 128  # tokens per interaction
    moe_aux_weight: float = 0.01
    fact_weight: float = 1.0  # loss weight of fact tokens (rxmrl.training.stages.facts); needs a `facts` column
    unfreeze_unit: Literal["step", "epoch"] = "step"  # what the three unfreeze_*_at thresholds count
    unfreeze_memory_attention_at: int = 0  # memory attention trains from here on
    unfreeze_encoder_at: int = 0  # encoder + embedding train from here on (>= the one above)
    # the decoder's own layers (self-attention, feed-forward, head) train from here on; before, of the decoder
    # only its memory cross-attention does, so the loss can fall only by reading memory
    unfreeze_decoder_at: int = 0
    # steps between memory probes on the validation episodes (metrics eval/*; the lowest loss with memory keeps
    # the checkpoint best); 0: only the probe after the stage
    probe_every: int = 0
    # [[from_step, follow_ups], ...]: from `from_step` on, train on the first `follow_ups` follow-ups of each
    # episode (first entry at step 0, both increasing); empty: every follow-up from the start
    follow_up_curriculum: list[tuple[int, int]] = field(default_factory=list)
    # the residual gates' bias when a fresh stage 4 starts (None: as stage 3 left it); negative keeps more of
    # the old memory at every write (sigmoid(-2) = 0.12). A resume loads the trained gates instead
    gate_bias: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_curriculum(self.follow_up_curriculum)
        if self.fact_weight <= 0:
            raise ValueError(f"fact_weight={self.fact_weight} must be > 0 (1 weights fact tokens like the rest)")
        if self.probe_every < 0:
            raise ValueError(f"probe_every={self.probe_every}: expected >= 0 steps between memory probes (0: none)")
        if min(self.unfreeze_memory_attention_at, self.unfreeze_encoder_at, self.unfreeze_decoder_at) < 0:
            raise ValueError("unfreeze_*_at must be >= 0")
        if self.unfreeze_encoder_at < self.unfreeze_memory_attention_at:
            raise ValueError(f"unfreeze_encoder_at={self.unfreeze_encoder_at} comes before "
                             f"unfreeze_memory_attention_at={self.unfreeze_memory_attention_at}; "
                             "the encoder unfreezes last")


def check_curriculum(curriculum: list[tuple[int, int]]) -> None:
    """Refuse a follow-up curriculum that does not start at step 0 or whose steps or counts do not increase."""
    if not curriculum:
        return
    starts, counts = [s for s, _ in curriculum], [n for _, n in curriculum]
    if starts[0] != 0:
        raise ValueError(f"follow_up_curriculum={curriculum}: the first entry must start at step 0")
    if any(b <= a for a, b in zip(starts, starts[1:])) or any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"follow_up_curriculum={curriculum}: steps and follow-up counts must both increase")
    if counts[0] < 1:
        raise ValueError(f"follow_up_curriculum={curriculum}: every entry trains on >= 1 follow-up")


def scheduled_follow_ups(step: int, curriculum: list[tuple[int, int]], available: int) -> int:
    """How many follow-ups stage 4 trains on at ``step`` (module docstring); ``available`` without a curriculum."""
    count = available
    for start, follow_ups in curriculum:
        if step >= start:
            count = follow_ups
    if count > available:
        raise ValueError(f"follow_up_curriculum asks for {count} follow-ups at step {step}; the episodes have "
                         f"{available} (data.curriculum_steps)")
    return count


def first_follow_ups(batch: dict[str, Tensor], follow_ups: int) -> dict[str, Tensor]:
    """The saved interaction and the first ``follow_ups`` follow-ups of ``[N + 1, B, T]`` episode tensors."""
    return {key: value[: follow_ups + 1] for key, value in batch.items()}


def trainable_groups(progress: int, config: MemoryAwareStageConfig, available: list[str]) -> list[str]:
    """The groups that train after ``progress`` steps (or epochs) of stage 4."""
    groups = ["memory_cross_attention"] + (["decoder"] if progress >= config.unfreeze_decoder_at else [])
    if progress >= config.unfreeze_memory_attention_at:
        groups += ["memory_attention", "stm"]  # "stm": the learned initial STM, when the config has one
    if progress >= config.unfreeze_encoder_at:
        groups += ["encoder", "embedding"]
    return [g for g in groups if g in available]


def follow_up_features(model: nn.Module, batch: dict[str, Tensor], reset_memory: bool = False,
                       generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor, dict[str, Tensor]]]:
    """Yield ``(hidden [B, T, D], moe_aux, follow-up batch)`` for follow-ups ``t = 1 .. N``: the decoder's final
    hidden states, which ``lm_head`` projects onto the vocabulary.

    ``batch`` holds ``[N + 1, B, T]`` tensors from :func:`pad_episodes`. With ``reset_memory`` the decoder
    reads a fresh STM at every follow-up instead of the accumulated one (the no-memory control).
    """
    rxt = unwrap_model(model)
    steps, size = batch["input_ids"].shape[:2]
    stm = rxt.initial_stm(size, generator)  # [B, L, S, D]
    for t in range(1, steps):
        if reset_memory:
            stm = rxt.initial_stm(size, generator)
        else:
            previous = trim({key: value[t - 1] for key, value in batch.items()})
            stm = rxt.write_memory(stm, previous["input_ids"], previous["attention_mask"])
        current = trim({key: value[t] for key, value in batch.items()})
        hidden, aux = rxt.decoder.features(current["input_ids"], stm, attention_mask=current["attention_mask"])
        yield hidden, aux, current


def follow_up_logits(model: nn.Module, batch: dict[str, Tensor], reset_memory: bool = False,
                     generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor, dict[str, Tensor]]]:
    """Yield ``(logits [B, T, V], moe_aux, follow-up batch)`` for follow-ups ``t = 1 .. N`` (as
    :func:`follow_up_features`, every position projected)."""
    head = unwrap_model(model).decoder.lm_head
    for hidden, aux, current in follow_up_features(model, batch, reset_memory, generator):
        yield head(hidden), aux, current


def memory_aware_step(model: nn.Module, batch: dict[str, Tensor],
                      config: MemoryAwareStageConfig) -> tuple[Tensor, dict[str, Any]]:
    """One batch of episodes: mean follow-up answer loss through the accumulated STM (+ MoE aux).

    The answer loss is the mean over tokens weighted by the rows' target weights (``fact_weight`` on fact
    tokens, 1 elsewhere), so ``ar_loss`` equals the plain mean only when ``fact_weight = 1``. Only the answer
    positions are projected onto the vocabulary (:func:`projected_next_token_loss`).
    """
    head = unwrap_model(model).decoder.lm_head
    losses, accuracies, auxes = [], [], []
    for hidden, aux, current in follow_up_features(model, batch):
        loss, accuracy = projected_next_token_loss(hidden, head, current)
        losses.append(loss)
        accuracies.append(accuracy)
        auxes.append(aux)
    ar_loss, aux_loss = torch.stack(losses).mean(), torch.stack(auxes).mean()
    loss = ar_loss + config.moe_aux_weight * aux_loss
    return loss, {"ar_loss": ar_loss.detach(), "aux_loss": aux_loss.detach(),
                  "ar_acc": torch.stack(accuracies).mean(), "last_follow_up_loss": losses[-1].detach()}


def train_memory_aware(model: nn.Module, episodes: list[list[Row]], config: MemoryAwareStageConfig,
                       env: DistEnv, *, run_dir: str | Path | None = None, desc: str = "memory aware",
                       eval_fn: EvalFn | None = None, run_config: Any = None) -> TrainResult:
    """Train on ``episodes`` (rows from :func:`episode_rows`) with gradual unfreezing."""
    rxt = unwrap_model(model)
    available = model_groups(rxt)
    if config.gate_bias is not None:
        set_gate_bias(rxt.memory_attention, config.gate_bias)

    def step_fn(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        follow_ups = scheduled_follow_ups(trainer.step, config.follow_up_curriculum, len(batch["input_ids"]) - 1)
        loss, metrics = memory_aware_step(m, first_follow_ups(batch, follow_ups), config)
        return loss, {**metrics, "follow_ups": float(follow_ups)}

    def schedule(trainer: Trainer) -> list[str]:
        progress = trainer.step if config.unfreeze_unit == "step" else trainer.epoch
        return trainable_groups(progress, config, available)

    probe = Evaluation(eval_fn, config.probe_every) if eval_fn is not None and config.probe_every else None
    run = RunRecord(run_dir, config=run_config, desc=desc)
    with make_trainer(rxt, step_fn, episodes, pad_episodes, config, env, run,
                      trainable=trainable_groups(0, config, available), trainable_schedule=schedule,
                      evaluation=probe) as trainer:
        return trainer.fit()
