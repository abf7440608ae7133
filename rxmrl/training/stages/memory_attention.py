"""Stage 3: self-supervised memory-attention pre-training.

Memory attention has no labels of its own: nobody knows what a "correct" STM is. So it is taught a
plausible one -- a weighted mean of the previous STM and the new interaction's encoded data -- before
stage 4 trains it end to end. For an episode of interactions ``I_0 .. I_N`` (``B`` episodes in lockstep):

    STM_{-1} = STM_init + N(0, σ_stm²)                            # the model's fresh STM + small noise
    ED_t     = Encoder(I_t)                                       # frozen, [B, L, T, D]
    Y_t      = MemAttn(STM_{t-1} + ε_in, ED_t + ε_in)             # [B, L, S, D]
    w_t      = clamp(w_0 + j, 0, 1) if t = 0  else  clamp(w_s − δ·t + j, 0, 1),  j ~ U(−ρ, ρ)
    target_t = (1 − w_t)·STM_{t-1} + w_t·pool_S(ED_t) + ε_label
    L_t      = −[(1 − c)·cos(Y_t, target_t) + c·cos(Y_t − Ȳ_t, target_t − t̄arget_t)]
               (cosine along D, mean over batch, layers and slots; bars: means over slots)
    STM_t    = stopgrad(Y_t)

with ``w_0 ≈ 0.9`` (the first write should be mostly new content), ``w_s = 0.5`` and ``δ = 0.05`` (later
writes keep more of what is there), jitter ``ρ ≤ 0.15``. The slot-centred cosine (weight ``c``, default 0:
the published loss) is ours: with the plain cosine the nano model's memory collapses (mean cosine between
the slots of a layer 0.99) while the loss looks fine (cosine 0.9). On nano, ``c = 0.5`` only lowered that
to 0.93-0.98 and let the STM norm grow to 40-70, so it is an option to study, not the default. With the per-slot identity in memory attention's
queries (``RxTConfig.slot_identity``) and 400 steps at lr 5e-3 (instead of 100 at 2e-3) the slots differ
(mean cosine 0.57-0.64) and so do episodes (same slot across episodes 0.86-0.90 instead of 0.99), at the
price of a growing STM norm (the cosine is scale-free; the decoder normalises memory before reading it).
Only memory attention trains; the loss is averaged
over the ``N + 1`` steps of the episode and applied once per batch.

``pool_S``, the encoded data brought to ``S`` slots. ``ED_t`` has ``T`` tokens, the STM ``S`` slots, and
``T ≠ S`` in general (the reference silently needs ``T = S``). Two definitions, per layer ``l``:

* ``"segments"`` (default): masked adaptive average pooling. Slot ``s`` is the mean of the real tokens in
  ``[⌊s·n/S⌋, max(⌈(s+1)·n/S⌉, ⌊s·n/S⌋ + 1))`` where ``n`` is the row's real length. With ``S ≥ n`` every
  slot is one token (repeated), which is the reference's token-per-slot target when ``S = n``; with ``S < n``
  each slot summarises a contiguous span. Slots get *different* targets (what the slot-centred cosine
  needs), and padding never leaks in.
* ``"mean"``: the masked mean over tokens, the same for every slot. Easier to reach (it does not ask an
  order-free slot to find "its" span), but every write pushes all slots toward one vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rxmrl.training.distributed import DistEnv
from rxmrl.training.loop import RunRecord, TrainResult
from rxmrl.training.stages.batching import Row, pad_episodes, trim
from rxmrl.training.stages.common import StageLoop, make_trainer, unwrap_model


@dataclass
class MemoryAttentionStageConfig(StageLoop):
    """Stage 3."""

    LIMITS: ClassVar[dict[str, str]] = {"num_episodes": ">= 1", "max_length": ">= 1", "first_weight": "in [0, 1]",
        "step_weight": "in [0, 1]", "step_decay": ">= 0", "weight_jitter": ">= 0", "stm_noise": ">= 0",
        "input_noise": ">= 0", "label_noise": ">= 0", "centred_weight": "in [0, 1]"}

    num_episodes: int | None = 1000  # episodes of the curriculum split to train on (None: all)
    max_length: int = 128  # tokens per interaction
    first_weight: float = 0.9  # w_0: share of new data in the first write
    step_weight: float = 0.5  # w_s: share of new data at later steps, before the decay
    step_decay: float = 0.05  # δ: w_t = w_s − δ·t for t >= 1
    weight_jitter: float = 0.15  # ρ: uniform jitter on every w_t
    stm_noise: float = 0.02  # σ_stm: noise added to the model's initial STM
    input_noise: float = 0.02  # std of the noise on STM_{t-1} and ED_t as memory attention sees them
    label_noise: float = 0.02  # std of the noise on the target
    pooling: Literal["segments", "mean"] = "segments"  # how ED_t is brought to S slots (see docstring)
    centred_weight: float = 0.0  # c: share of the slot-centred cosine in the score (see slot_cosine)


def pool_segments(encoded: Tensor, mask: Tensor, slots: int) -> Tensor:
    """Masked adaptive average pooling ``[B, L, T, D] -> [B, L, S, D]`` (see the module docstring)."""
    lengths = mask.sum(1).clamp(min=1).to(encoded.dtype)  # [B]
    s = torch.arange(slots, device=encoded.device, dtype=encoded.dtype)  # [S]
    start = torch.floor(s[None] * lengths[:, None] / slots)  # [B, S]
    end = torch.maximum(torch.ceil((s[None] + 1) * lengths[:, None] / slots), start + 1)  # [B, S]
    t = torch.arange(encoded.shape[2], device=encoded.device, dtype=encoded.dtype)  # [T]
    inside = (t[None, None] >= start[..., None]) & (t[None, None] < end[..., None]) & mask.bool()[:, None]
    weights = inside.to(encoded.dtype)  # [B, S, T]
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.einsum("bst,bltd->blsd", weights, encoded)


def pool_mean(encoded: Tensor, mask: Tensor, slots: int) -> Tensor:
    """Masked mean over tokens, broadcast to every slot: ``[B, L, T, D] -> [B, L, S, D]``."""
    weights = mask.to(encoded.dtype)[:, None, :, None]  # [B, 1, T, 1]
    mean = (encoded * weights).sum(2) / weights.sum(2).clamp(min=1.0)  # [B, L, D]
    return mean[:, :, None].expand(-1, -1, slots, -1)


POOLINGS = {"segments": pool_segments, "mean": pool_mean}


def slot_cosine(stm: Tensor, target: Tensor, centred_weight: float) -> Tensor:
    """``(1 − c)·cos(Y, target) + c·cos(Y − mean_s Y, target − mean_s target)``, mean over batch/layers/slots.

    Encoder states share one large direction, so the plain cosine is ≈ 0.9 when every slot holds the same
    vector -- a collapsed memory that stage 4 cannot undo (identical slots query identically forever).
    The slot-centred term scores only what differs between slots, so it rewards a memory whose slots
    carry different content. ``stm``/``target``: ``[B, L, S, D]``.
    """
    plain = F.cosine_similarity(stm, target, dim=-1).mean()
    if centred_weight == 0:
        return plain
    centred = F.cosine_similarity(stm - stm.mean(2, keepdim=True), target - target.mean(2, keepdim=True),
                                  dim=-1, eps=1e-6).mean()
    return (1 - centred_weight) * plain + centred_weight * centred


def new_data_weight(step: int, batch: int, config: MemoryAttentionStageConfig, device: torch.device) -> Tensor:
    """``w_t`` per episode, ``[B, 1, 1, 1]``: the share of new encoded data in the target at step ``t``."""
    base = config.first_weight if step == 0 else config.step_weight - config.step_decay * step
    jitter = (torch.rand(batch, device=device) * 2 - 1) * config.weight_jitter
    return (base + jitter).clamp(0.0, 1.0)[:, None, None, None]


def memory_attention_step(model: nn.Module, batch: dict[str, Tensor],
                          config: MemoryAttentionStageConfig) -> tuple[Tensor, dict[str, Any]]:
    """One episode batch: the mean over steps of ``−cos(MemAttn(STM, ED), target)``."""
    rxt = unwrap_model(model)
    steps, size = batch["input_ids"].shape[:2]
    shape = (size, rxt.config.num_layers, rxt.config.stm_slots, rxt.config.dim)
    stm = rxt.initial_stm(size) + config.stm_noise * torch.randn(shape, device=batch["input_ids"].device)
    pool = POOLINGS[config.pooling]
    losses = []
    for t in range(steps):
        step = trim({key: value[t] for key, value in batch.items()})
        with torch.no_grad():
            encoded, _ = rxt.encoder(step["input_ids"], step["attention_mask"])  # [B, L, T, D]
            weight = new_data_weight(t, size, config, stm.device)
            target = (1 - weight) * stm + weight * pool(encoded, step["attention_mask"], shape[2])
            target = target + config.label_noise * torch.randn_like(target)
        noisy_stm = stm + config.input_noise * torch.randn_like(stm)
        noisy_encoded = encoded + config.input_noise * torch.randn_like(encoded)
        new_stm = rxt.memory_attention(noisy_stm, noisy_encoded, step["attention_mask"])
        losses.append(-slot_cosine(new_stm, target, config.centred_weight))
        stm = new_stm.detach()
    loss = torch.stack(losses).mean()
    return loss, {"cosine": -loss.detach(), "cosine_first": -losses[0].detach(), "cosine_last": -losses[-1].detach()}


def train_memory_attention(model: nn.Module, episodes: list[list[Row]], config: MemoryAttentionStageConfig,
                           env: DistEnv, *, run_dir: str | Path | None = None, desc: str = "memory attention",
                           run_config: Any = None) -> TrainResult:
    """Train only memory attention on ``episodes`` (rows from :func:`episode_rows`)."""
    def step_fn(m: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        return memory_attention_step(m, batch, config)

    with make_trainer(unwrap_model(model), step_fn, episodes, pad_episodes, config, env,
                      RunRecord(run_dir, config=run_config, desc=desc), trainable=["memory_attention"]) as trainer:
        return trainer.fit()
