"""The memory encoder: a bidirectional transformer over one whole interaction.

It turns ``query + [A] + answer + [EOS]`` into encoded data ``ED: [B, L, T, D]``, the output of every
layer, so that memory attention layer ``l`` can read encoder layer ``l``. An optional MLM head predicts
masked tokens from the last layer (joint LM pre-training).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rxmrl.model.attention import Attention, Rotary
from rxmrl.model.config import RxTConfig
from rxmrl.model.layers import RMSNorm, SwiGLU


class EncoderLayer(nn.Module):
    """``h = x + SelfAttn(norm(x))`` (bidirectional, RoPE), ``y = h + SwiGLU(norm(h))``."""

    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = Attention(config.dim, config.head_dim, *config.heads("encoder_attention_heads"),
                              rope="both", rope_theta=config.rope_theta, output_bias=config.attention_output_bias)
        self.ff_norm = RMSNorm(config.dim, config.norm_eps)
        self.ff = SwiGLU(config.dim, config.encoder_ff_dim, bias=config.encoder_ff_bias)

    def forward(self, x: Tensor, rotary: Rotary, mask: Tensor | None) -> Tensor:
        h = self.attn_norm(x)
        x = x + self.attn(h, *self.attn.project_kv(h, rotary), rotary=rotary, mask=mask)
        return x + self.ff(self.ff_norm(x))


class Encoder(nn.Module):
    """``forward(input_ids, attention_mask) -> (encoded [B, L, T, D], mlm_logits [B, T, V] | None)``."""

    def __init__(self, config: RxTConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.config, self.embedding = config, embedding
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        if config.mlm_head:
            self.mlm_norm = RMSNorm(config.dim, config.norm_eps)
            self.mlm_head = nn.Linear(config.dim, config.vocab_size, bias=False)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, return_mlm_logits: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``input_ids: [B, T]`` right-padded; ``attention_mask: [B, T]`` True/1 for real tokens."""
        hidden = self.hidden_states(input_ids, attention_mask)
        encoded = torch.stack(hidden, dim=1)  # [B, L, T, D]
        mlm_logits = None
        if return_mlm_logits:
            if not self.config.mlm_head:
                raise ValueError("return_mlm_logits=True but the config has mlm_head=False")
            mlm_logits = self.mlm_head(self.mlm_norm(hidden[-1]))
        return encoded, mlm_logits

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> list[Tensor]:
        """Each layer's output ``[B, T, D]`` (``forward`` stacks them). A reader of the last layer alone (the
        critic) takes ``[-1]`` without the stacked copy, whose backward fills a zero gradient for every layer."""
        batch, length = input_ids.shape
        rotary = self.layers[0].attn.angles(batch, length, input_ids.device)  # positions 0..T-1
        mask = None
        if attention_mask is not None:
            key_valid = attention_mask.bool()
            # Each token also sees itself, so a padding row never has all keys masked.
            mask = (key_valid[:, None, :] | torch.eye(length, dtype=torch.bool,
                                                     device=input_ids.device))[:, None]  # [B,1,T,T]
        x = self.embedding(input_ids)  # [B, T, D]
        hidden = []
        for layer in self.layers:
            x = layer(x, rotary, mask)
            hidden.append(x)
        return hidden
