"""Stages 1 and 2: joint LM pre-training (stories) and joint interaction SFT (query/answer pairs).

One algorithm, two data sets. For a batch of sequences ``x`` (right-padded):

    x̃            = mask(x)                                     # BERT-style 80/10/10 on 15% of tokens
    ED, z_mlm    = Encoder(x̃)                                  # ED: [B, L, T, D], z_mlm: [B, T, V]
    M            = stopgrad(ED) + σ·rms(ED)·ε,  ε ~ N(0, I)    # the decoder's "memory"; rms per token
    z_ar         = Decoder(x, memory=M, memory_mask=pad mask)  # causal; cross-attends layer l of M
    L            = α·CE(z_ar[:-1], x[1:]) + β·CE_masked(z_mlm, x) + λ·L_MoE

Why this shape: the decoder's memory cross-attention must learn to *read* a per-layer memory before any
real STM exists, so it reads the encoder's layer outputs of the same text -- the closest stand-in for what
memory attention will later write. The detach keeps the AR loss from shaping the encoder (the encoder
learns from MLM alone), and the noise keeps the decoder from relying on an exact copy: it must still model
language itself. The noise is relative to each token state's RMS because the encoder's residual stream
is small and drifts during training (RMS ≈ 0.18 on nano after stage 1): an absolute σ = 0.15 drowned the
signal, and the decoder learned to ignore its memory (its loss with the interaction's own encoder states
as memory was barely below the loss with random memory, and nothing later could make memory matter).
The embedding is shared, so both losses train it. Stage 2 uses the interaction format
``[BOS][Q] q [A] a [EOS]`` and always keeps ``[EOS]`` among the AR targets, so the decoder learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rxmrl.training.distributed import DistEnv
from rxmrl.training.loop import RunRecord, TrainResult
from rxmrl.training.stages.batching import Row, mask_tokens, masked_cross_entropy, next_token_loss, pad_rows
from rxmrl.training.stages.common import StageLoop, make_trainer, unwrap_model


@dataclass
class JointStageConfig(StageLoop):
    """Stage 1 (stories) or stage 2 (interactions)."""

    MOVED: ClassVar[dict[str, str]] = {"answer_only": "answer_only is a setting of stage 2 (interactions) only"}

    LIMITS: ClassVar[dict[str, str]] = {"num_examples": ">= 1", "max_length": ">= 1", "ar_weight": ">= 0",
        "mlm_weight": ">= 0", "moe_aux_weight": ">= 0", "mask_prob": "in [0, 1]", "memory_noise": ">= 0"}

    num_examples: int = 2000  # stories (stage 1) or interactions (stage 2) to train on
    max_length: int = 128  # tokens per sequence, special tokens included
    ar_weight: float = 1.0  # α
    mlm_weight: float = 1.0  # β
    moe_aux_weight: float = 0.01  # λ, MoE load balancing
    mask_prob: float = 0.15  # share of tokens the encoder sees corrupted
    memory_noise: float = 0.15  # σ of the Gaussian noise on the detached encoder outputs, relative to their RMS


@dataclass
class InteractionStageConfig(JointStageConfig):
    """Stage 2 (interactions): stage 1's settings, and which tokens are AR targets."""

    answer_only: bool = False  # AR targets only on answer tokens + [EOS] (False: every token)


def joint_step(model: nn.Module, batch: dict[str, Tensor], config: JointStageConfig) -> tuple[Tensor, dict[str, Any]]:
    """One joint step (see the module docstring); returns the loss and its named parts."""
    rxt = unwrap_model(model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    masked, selected = mask_tokens(ids, mask, config.mask_prob, rxt.config.vocab_size)
    encoded, mlm_logits = rxt.encoder(masked, mask, return_mlm_logits=True)  # [B, L, T, D], [B, T, V]
    memory = encoded.detach()
    if config.memory_noise > 0:
        rms = memory.pow(2).mean(-1, keepdim=True).sqrt()  # [B, L, T, 1]
        memory = memory + config.memory_noise * rms * torch.randn_like(memory)
    logits, aux = rxt.decoder(ids, memory, memory_mask=mask, attention_mask=mask)  # [B, T, V]
    ar_loss, ar_acc = next_token_loss(logits, batch)
    mlm_loss, mlm_acc = masked_cross_entropy(mlm_logits, ids, selected)
    loss = config.ar_weight * ar_loss + config.mlm_weight * mlm_loss + config.moe_aux_weight * aux
    return loss, {"ar_loss": ar_loss.detach(), "mlm_loss": mlm_loss.detach(), "aux_loss": aux.detach(),
                  "ar_acc": ar_acc, "mlm_acc": mlm_acc}


def train_joint(model: nn.Module, rows: list[Row], config: JointStageConfig, env: DistEnv, *,
                run_dir: str | Path | None = None, desc: str = "joint", run_config: Any = None) -> TrainResult:
    """Train every group (embedding, encoder + MLM head, decoder, memory cross-attention) on ``rows``.

    Memory attention gets no gradient here (it is not used), so it stays as it was.
    """
    def step_fn(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        return joint_step(m, batch, config)

    groups = ["embedding", "encoder", "decoder", "memory_cross_attention"]
    with make_trainer(unwrap_model(model), step_fn, rows, pad_rows, config, env,
                      RunRecord(run_dir, config=run_config, desc=desc), trainable=groups) as trainer:
        return trainer.fit()
