"""The generator-decoder: causal self-attention, memory cross-attention to STM, MoE (or dense) feed-forward.

Each layer ``l`` (pre-norm residual blocks)::

    h = x + SelfAttn(norm(x))                 # causal, RoPE on queries and keys, KV-cached
    h = h + MemCrossAttn(norm(h), norm_m(memory[:, l]))  # RoPE on queries only; memory K/V cached
    y = h + MoE(norm(h))                      # top-k experts + load-balancing aux loss (or a dense SwiGLU)

``memory`` is ``[B, L, S, D]``: the STM, or any per-layer memory with another slot count (stage 1 of
the supervised warm start feeds the encoder's per-layer hidden states with a key padding mask).

``norm_m`` normalises the memory before its key/value projection. The memory is a residual stream (encoder
states, or STM written from them) whose scale is small and drifts (RMS ≈ 0.2 on nano); projected raw, its
keys were so small that memory cross-attention was nearly uniform, and the decoder learned to ignore its
memory altogether (measured: its answer loss barely changed even with the interaction's own encoder states
as memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rxmrl.model.attention import Attention, KVCache, Rotary, rope_angles
from rxmrl.model.config import RxTConfig
from rxmrl.model.layers import MoE, RMSNorm, SwiGLU

MemoryKV = list[tuple[Tensor, Tensor]]
"""Per-layer memory cross-attention keys and values, each ``[B, H_kv, S, d_h]``."""


@dataclass
class DecoderCache:
    """What incremental decoding keeps between steps: self-attention KV and memory KV."""

    self_kv: KVCache
    memory_kv: MemoryKV
    memory_mask: Tensor | None = None  # [B, S] bool, True = real memory slot
    num_valid: Tensor | None = None  # [B] real tokens seen so far (the next RoPE position)


def causal_mask(query_valid: Tensor, key_valid: Tensor, offset: int) -> Tensor:
    """Bool ``[B, 1, T, K]``: query ``t`` (at cache column ``offset + t``) sees real keys ``<=`` itself.

    Every query also sees itself, so padding queries never get an all-masked (NaN) row.
    """
    length, keys = query_valid.shape[1], key_valid.shape[1]
    query_pos = torch.arange(length, device=key_valid.device)[:, None] + offset  # [T, 1]
    key_pos = torch.arange(keys, device=key_valid.device)[None, :]  # [1, K]
    allowed = (key_pos <= query_pos) & key_valid[:, None, :]  # [B, T, K]
    allowed = allowed | (key_pos == query_pos)
    return allowed[:, None]  # [B, 1, T, K]


def final_norm(config: RxTConfig) -> nn.Module:
    """The norm before the LM head: RMSNorm (ours), LayerNorm, or none (some converted checkpoints)."""
    if config.final_norm == "rms":
        return RMSNorm(config.dim, config.norm_eps)
    if config.final_norm == "layer":
        return nn.LayerNorm(config.dim)
    return nn.Identity()


class DecoderLayer(nn.Module):
    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        bias = config.attention_output_bias
        self.self_norm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config.dim, config.head_dim, *config.heads(), rope="both",
                                   rope_theta=config.rope_theta, output_bias=bias)
        self.memory_norm = RMSNorm(config.dim, config.norm_eps)
        self.memory_kv_norm = RMSNorm(config.dim, config.norm_eps)
        self.memory_cross_attn = Attention(config.dim, config.head_dim, *config.heads("cross_attention_heads"),
                                           rope="query", rope_theta=config.rope_theta, output_bias=bias)
        self.ff_norm = RMSNorm(config.dim, config.norm_eps)
        self.moe = self.ff = None  # one of them: routed experts, or one dense SwiGLU (decoder_ff)
        if config.decoder_ff == "dense":
            self.ff = SwiGLU(config.dim, config.expert_dim, bias=config.expert_bias)
        else:
            shared_dim = (config.shared_expert_dim or config.expert_dim) if config.shared_experts else None
            self.moe = MoE(config.dim, config.expert_dim, config.num_experts, config.experts_per_token,
                           output_bias=config.moe_output_bias, shared_dim=shared_dim,
                           shared_bias=config.shared_expert_bias, expert_bias=config.expert_bias)

    def feed_forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The feed-forward and its load-balancing aux loss (0 for a dense one: nothing to balance)."""
        if self.moe is not None:
            return self.moe(x)
        return self.ff(x), x.new_zeros((), dtype=torch.float32)

    def forward(
        self,
        x: Tensor,
        rotary: Rotary,
        self_mask: Tensor | None,
        memory_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor | None,
        cache: KVCache | None = None,
        index: int = 0,
    ) -> tuple[Tensor, Tensor]:
        h = self.self_norm(x)
        k, v = self.self_attn.project_kv(h, rotary)
        if cache is not None:
            k, v = cache.write(index, k, v)  # all keys/values so far, [B, H_kv, T_cached + T, d_h]
        x = x + self.self_attn(h, k, v, rotary=rotary, mask=self_mask, is_causal=self_mask is None)
        x = x + self.memory_cross_attn(self.memory_norm(x), *memory_kv, rotary=rotary,
                                       mask=memory_mask)
        ff, aux = self.feed_forward(self.ff_norm(x))
        return x + ff, aux


class Decoder(nn.Module):
    """Generator-decoder; ``forward(input_ids, memory, ...) -> (logits [B, T, V], aux_loss)``."""

    def __init__(self, config: RxTConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config, self.embedding = config, embedding
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = final_norm(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_lm_head:
            self.lm_head.weight = embedding.weight

    def memory_kv(self, memory: Tensor) -> MemoryKV:
        """Project ``memory: [B, L, S, D]`` to per-layer keys/values once (STM is fixed while answering)."""
        if memory.dim() != 4 or memory.shape[1] != len(self.layers):
            raise ValueError(
                f"memory has shape {tuple(memory.shape)}, expected [B, {len(self.layers)}, S, "
                f"{self.config.dim}]"
            )
        return [layer.memory_cross_attn.project_kv(layer.memory_kv_norm(memory[:, i]))
                for i, layer in enumerate(self.layers)]

    def new_cache(
        self, memory: Tensor, max_len: int, memory_mask: Tensor | None = None
    ) -> DecoderCache:
        """An empty cache for ``max_len`` tokens with memory keys/values computed from ``memory``."""
        batch = memory.shape[0]
        self_kv = KVCache.empty(len(self.layers), batch, self.config.kv_heads,
                                self.config.head_dim, max_len, like=memory)
        num_valid = torch.zeros(batch, dtype=torch.long, device=memory.device)
        return DecoderCache(self_kv, self.memory_kv(memory), memory_mask, num_valid)

    def forward(self, input_ids: Tensor, memory: Tensor | None = None, memory_mask: Tensor | None = None,
                attention_mask: Tensor | None = None, cache: DecoderCache | None = None) -> tuple[Tensor, Tensor]:
        """Logits ``[B, T, V]`` and the mean MoE aux loss over layers (arguments as :meth:`features`)."""
        hidden, aux = self.features(input_ids, memory, memory_mask, attention_mask, cache)
        return self.lm_head(hidden), aux

    def features(self, input_ids: Tensor, memory: Tensor | None = None, memory_mask: Tensor | None = None,
                 attention_mask: Tensor | None = None, cache: DecoderCache | None = None) -> tuple[Tensor, Tensor]:
        """Final-norm hidden states ``[B, T, D]`` (what ``lm_head`` reads) and the mean MoE aux loss.

        Scoring calls this and projects only the positions it needs onto the vocabulary: the ``[B, T, V]``
        projection over every prompt and padding position is most of a training step's memory traffic.

        ``input_ids: [B, T]``; ``attention_mask: [B, T]`` bool/0-1 with padding as False (left padding for
        generation, right padding for training; RoPE positions count real tokens only). Either give
        ``memory: [B, L, S, D]`` (+ optional ``memory_mask: [B, S]``, True = real slot) or a ``cache``
        from :meth:`new_cache`, which is then extended by these tokens.
        """
        batch, length = input_ids.shape
        token_mask = (
            torch.ones_like(input_ids, dtype=torch.bool)
            if attention_mask is None
            else attention_mask.bool()
        )
        base = cache.num_valid[:, None] if cache is not None else 0
        positions = (base + token_mask.long().cumsum(1) - 1).clamp(min=0)  # [B, T]
        if cache is not None:
            memory_kv, memory_mask = cache.memory_kv, cache.memory_mask
            offset = cache.self_kv.length
            key_valid = torch.cat((cache.self_kv.valid[:, :offset], token_mask), dim=1)
            self_mask = causal_mask(token_mask, key_valid, offset)
        else:
            if memory is None:
                raise ValueError("Decoder.forward needs memory [B, L, S, D] or a cache")
            memory_kv = self.memory_kv(memory)
            # No padding: let SDPA use its fused causal kernel instead of an explicit mask.
            padded = attention_mask is not None and not bool(token_mask.all())
            self_mask = causal_mask(token_mask, token_mask, 0) if padded else None
        cross_mask = None if memory_mask is None else memory_mask.bool()[:, None, None, :]

        rotary = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
        x = self.embedding(input_ids)  # [B, T, D]
        aux_total = x.new_zeros((), dtype=torch.float32)
        self_kv = cache.self_kv if cache is not None else None
        for i, layer in enumerate(self.layers):
            x, aux = layer(x, rotary, self_mask, memory_kv[i], cross_mask, self_kv, i)
            aux_total = aux_total + aux
        if cache is not None:
            cache.self_kv.advance(token_mask)
            cache.num_valid = cache.num_valid + token_mask.long().sum(1)
        return self.norm(x), aux_total / len(self.layers)
