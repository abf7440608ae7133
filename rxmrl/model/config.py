"""Model configuration and presets.

One typed dataclass describes the whole Reactive Transformer (decoder, encoder, memory attention, STM).
Heads follow Sparse Query Attention (SQA): ``num_heads`` fixes the head size (``dim // num_heads``), while
``query_heads`` and ``kv_heads`` say how many of them are actually used; fewer query heads than
``num_heads`` is what cuts the attention FLOPs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MEMORY_ATTENTION_VARIANTS = ("simple", "self", "interlayer", "self-interlayer")
RESIDUAL_GATES = ("elementwise", "linear", "none")
GATE_ACTIVATIONS = ("sigmoid", "tanh")
STM_INIT_TYPES = ("normal", "zeros", "learned")


@dataclass(frozen=True)
class RxTConfig:
    """Every size and switch of a Reactive Transformer."""

    vocab_size: int = 20_000  # shared by decoder and encoder (one embedding)
    dim: int = 256  # model width D
    num_layers: int = 12  # decoder layers = encoder layers = STM layers L (layer l talks to layer l)
    num_heads: int = 16  # head size = dim // num_heads
    query_heads: int = 8  # SQA query heads used by every attention
    kv_heads: int = 8  # key/value heads (grouped); query_heads must be a multiple
    num_experts: int = 36  # decoder MoE experts per layer
    experts_per_token: int = 6  # top-k routing
    expert_dim: int = 384  # SwiGLU hidden size of one expert
    encoder_ff_dim: int = 784  # dense SwiGLU hidden size in the memory encoder
    stm_slots: int = 256  # STM slots S per layer
    max_seq_len: int = 256  # interaction length the model is trained for (RoPE needs no table)
    memory_attention: str = "self-interlayer"  # one of MEMORY_ATTENTION_VARIANTS
    residual_gate: str = "elementwise"  # one of RESIDUAL_GATES (per-slot elementwise or linear)
    gate_activation: str = "sigmoid"  # one of GATE_ACTIVATIONS
    gate_init_bias: float = 0.0  # initial gate pre-activation (sigmoid(0) = 0.5)
    slot_identity: bool = True  # learned per-slot query offset in memory attention (see model/memory.py)
    slot_identity_std: float = 1.0  # its init std: comparable to the RMS-normed slot content
    stm_init: str = "normal"  # one of STM_INIT_TYPES
    stm_init_std: float = 0.02  # std of the "normal" STM init
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    tie_lm_head: bool = False  # the published decoder has its own LM head
    mlm_head: bool = True  # encoder MLM head (used by joint pre-training; not in the published counts)
    decoder_only: bool = False  # build no encoder / memory attention (e.g. rxt-alpha-mini-decoder)

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        if (self.dim // self.num_heads) % 2:
            raise ValueError(f"head size {self.dim // self.num_heads} must be even for RoPE")
        if self.query_heads % self.kv_heads:
            raise ValueError(
                f"query_heads {self.query_heads} must be a multiple of kv_heads {self.kv_heads}"
            )
        if not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError(
                f"experts_per_token {self.experts_per_token} must be in [1, {self.num_experts}]"
            )
        for name, allowed in (
            ("memory_attention", MEMORY_ATTENTION_VARIANTS),
            ("residual_gate", RESIDUAL_GATES),
            ("gate_activation", GATE_ACTIVATIONS),
            ("stm_init", STM_INIT_TYPES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}, expected one of {allowed}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def replace(self, **changes: Any) -> RxTConfig:
        """A copy with some fields changed (e.g. ``vocab_size`` from a trained tokenizer)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RxTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown RxTConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    def save(self, path: str | Path) -> None:
        from rxmrl.runtime import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RxTConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS: dict[str, RxTConfig] = {
    # Published RxT-Alpha (supervised) sizes: decoder ~141M (~34.8M active), encoder ~13.8M,
    # memory attention ~5.53M.
    "rxt-alpha-supervised": RxTConfig(),
    # Published decoder-only RxT-Alpha-Mini: ~60M.
    "rxt-alpha-mini-decoder": RxTConfig(
        vocab_size=10_000,
        num_layers=8,
        num_experts=16,
        experts_per_token=2,
        expert_dim=512,
        stm_slots=1024,
        max_seq_len=1024,
        decoder_only=True,
    ),
    # Trains in seconds to minutes on 2 CPU cores; set vocab_size from the tokenizer.
    "nano": RxTConfig(
        vocab_size=4096,
        dim=64,
        num_layers=2,
        num_heads=4,
        query_heads=2,
        kv_heads=2,
        num_experts=4,
        experts_per_token=2,
        expert_dim=128,
        encoder_ff_dim=192,
        stm_slots=32,
    ),
    "micro": RxTConfig(
        vocab_size=8192,
        dim=128,
        num_layers=4,
        num_heads=8,
        query_heads=4,
        kv_heads=4,
        num_experts=8,
        experts_per_token=2,
        expert_dim=256,
        encoder_ff_dim=384,
        stm_slots=64,
    ),
}


def get_preset(name: str, **overrides: Any) -> RxTConfig:
    """The named preset, with fields overridden (``get_preset("nano", vocab_size=3000)``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
