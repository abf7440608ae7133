"""The value model: what return to expect from answering the current query with the current memory.

The policy's answer depends on the query and on what memory holds about the saved interaction, so the
critic reads exactly that text -- the step's saved data (the interaction the question is about: for a
long-range episode's final question the *first* interaction, not the latest) followed by the query -- with
a longer context than the policy's single interaction::

    h = Encoder_critic(saved interaction + query)                    # [B, T, D], last layer
    h = h + CrossAttn(norm h, norm STM_last)                         # optional: memory-aware
    V = w · RMSNorm(mean_t h) + b                                    # [B]

The encoder (and its own copy of the embedding) is initialised from the warm-start memory encoder, which
already turns interactions into the representation memory attention consumes.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rxmrl.model import ReactiveTransformer
from rxmrl.model.attention import Attention
from rxmrl.model.layers import RMSNorm


class Critic(nn.Module):
    def __init__(self, policy: ReactiveTransformer, memory_aware: bool = False) -> None:
        super().__init__()
        if policy.encoder is None:
            raise ValueError("the critic is initialised from the policy's memory encoder; this model has none")
        cfg = policy.config
        self.encoder = copy.deepcopy(policy.encoder)  # its own embedding copy comes along
        for name in ("mlm_head", "mlm_norm"):  # the value head replaces the MLM head
            if hasattr(self.encoder, name):
                delattr(self.encoder, name)
        self.memory_aware = memory_aware
        if memory_aware:
            self.query_norm = RMSNorm(cfg.dim, cfg.norm_eps)
            self.memory_norm = RMSNorm(cfg.dim, cfg.norm_eps)
            self.memory_attn = Attention(cfg.dim, cfg.head_dim, cfg.query_heads, cfg.kv_heads, rope="none")
            nn.init.zeros_(self.memory_attn.o_proj.weight)  # starts as the plain critic
        self.head_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.value_head = nn.Linear(cfg.dim, 1)
        nn.init.normal_(self.value_head.weight, std=cfg.init_std)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, ids: Tensor, mask: Tensor, stm: Tensor | None = None) -> Tensor:
        """``ids, mask: [B, T]`` (right-padded), ``stm: [B, L, S, D]`` (used when memory-aware) -> ``[B]``."""
        hidden = self.encoder.hidden_states(ids, mask)[-1]  # [B, T, D], last layer
        if self.memory_aware:
            if stm is None:
                raise ValueError("a memory-aware critic needs the STM [B, L, S, D]")
            memory = self.memory_norm(stm[:, -1].detach().to(hidden.dtype))  # [B, S, D]
            hidden = hidden + self.memory_attn(self.query_norm(hidden), *self.memory_attn.project_kv(memory))
        weights = mask.to(hidden.dtype)[..., None]  # [B, T, 1]
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [B, D]
        return self.value_head(self.head_norm(pooled)).squeeze(-1)
