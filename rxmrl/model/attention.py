"""Sparse Query Attention with rotary positions and a key/value cache.

SQA keeps the head size of a ``num_heads`` model but uses only ``query_heads`` query heads (and
``kv_heads`` grouped key/value heads), so the score computation costs ``query_heads / num_heads`` of
full multi-head attention:

    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_h)) V,   Q: [B, H_q, T, d_h],  K, V: [B, H_kv, S, d_h]

RoPE rotates pairs of channels by an angle proportional to the position. Where it applies differs by
use: self-attention rotates queries and keys; memory cross-attention rotates only the decoder's queries
(STM slots have no order); memory attention rotates only the keys (the encoded interaction has an
order, the STM queries do not).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROPE_MODES = ("both", "query", "key", "none")


Rotary = tuple[Tensor, Tensor]
"""cos and sin of the RoPE angles, each ``[B, 1, T, d_h/2]``; computed once per forward, shared by
layers."""


def rope_angles(positions: Tensor, head_dim: int, theta: float) -> Rotary:
    """cos/sin of the angles ``pos / theta^(2i/d_h)``: positions ``[B, T]`` -> ``[B, 1, T, d_h/2]``."""
    inv_freq = theta ** (
        -torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    )
    angles = positions.float()[..., None] * inv_freq  # [B, T, d_h/2]
    return angles.cos()[:, None], angles.sin()[:, None]  # [B, 1, T, d_h/2]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs ``(x_i, x_{i+d/2})`` of ``x: [B, H, T, d_h]`` by the given angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


class Attention(nn.Module):
    """SQA attention of a query sequence over a key/value sequence (itself or another one)."""

    def __init__(
        self,
        dim: int,
        head_dim: int,
        query_heads: int,
        kv_heads: int,
        rope: str = "both",
        rope_theta: float = 10_000.0,
        output_bias: bool = False,
    ) -> None:
        super().__init__()
        if rope not in ROPE_MODES:
            raise ValueError(f"rope={rope!r}, expected one of {ROPE_MODES}")
        self.head_dim, self.query_heads, self.kv_heads = head_dim, query_heads, kv_heads
        self.rope, self.rope_theta = rope, rope_theta
        self.q_proj = nn.Linear(dim, query_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(query_heads * head_dim, dim, bias=output_bias)

    def _split_heads(self, x: Tensor, heads: int) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, heads, self.head_dim).transpose(1, 2)  # [B, H, T, d_h]

    def angles(self, batch: int, length: int, device: torch.device) -> Rotary:
        """Rotary angles for positions ``0..length-1``."""
        positions = torch.arange(length, device=device).expand(batch, -1)  # [B, T]
        return rope_angles(positions, self.head_dim, self.rope_theta)

    def project_kv(self, context: Tensor, rotary: Rotary | None = None) -> tuple[Tensor, Tensor]:
        """Keys and values ``[B, H_kv, S, d_h]`` of ``context: [B, S, D]``.

        Keys are rotated when RoPE applies to keys (``rotary`` defaults to positions ``0..S-1``).
        """
        k = self._split_heads(self.k_proj(context), self.kv_heads)
        v = self._split_heads(self.v_proj(context), self.kv_heads)
        if self.rope in ("both", "key"):
            if rotary is None:
                rotary = self.angles(context.shape[0], context.shape[1], context.device)
            k = apply_rope(k, *rotary)
        return k, v

    def forward(
        self,
        x: Tensor,
        k: Tensor,
        v: Tensor,
        rotary: Rotary | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Attend from ``x: [B, T, D]`` to precomputed ``k, v``.

        ``mask: [B, 1, T|1, S]`` bool, True = attend; ``is_causal`` when there is no padding.
        """
        q = self._split_heads(self.q_proj(x), self.query_heads)  # [B, H_q, T, d_h]
        if self.rope in ("both", "query"):
            if rotary is None:
                raise ValueError(f"rope={self.rope!r} rotates queries, so rotary angles are required")
            q = apply_rope(q, *rotary)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=self.query_heads != self.kv_heads
        )  # [B, H_q, T, d_h]
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))  # [B, T, D]


@dataclass
class KVCache:
    """Preallocated self-attention keys/values for all decoder layers.

    ``keys``/``values``: ``[L, B, H_kv, T_max, d_h]``. ``valid``: ``[B, T_max]`` marks real (non-pad)
    cached tokens; ``length`` is how many columns are filled. Layers write at ``length``; the decoder
    calls :meth:`advance` once all layers have written a step.
    """

    keys: Tensor
    values: Tensor
    valid: Tensor
    length: int = 0

    @classmethod
    def empty(
        cls, layers: int, batch: int, kv_heads: int, head_dim: int, max_len: int, like: Tensor
    ) -> KVCache:
        shape = (layers, batch, kv_heads, max_len, head_dim)
        keys = torch.zeros(shape, dtype=like.dtype, device=like.device)
        valid = torch.zeros(batch, max_len, dtype=torch.bool, device=like.device)
        return cls(keys, torch.zeros_like(keys), valid)

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v: [B, H_kv, T, d_h]`` after the cached ones; return all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} tokens, capacity {self.max_len}")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, token_mask: Tensor) -> None:
        """Mark ``token_mask: [B, T]`` (True = real token) as cached and move the write position."""
        end = self.length + token_mask.shape[1]
        self.valid[:, self.length : end] = token_mask
        self.length = end
