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
MEMORY_ATTENTION_STAGES = ("parallel", "sequential")
RESIDUAL_GATES = ("elementwise", "linear", "none", "slot-constant", "slot-scaled", "slot-linear")
GATE_ACTIVATIONS = ("sigmoid", "tanh")
STM_INIT_TYPES = ("normal", "zeros", "learned")
FINAL_NORMS = ("rms", "layer", "none")
DECODER_FFS = ("moe", "dense")
INTERACTION_WRITES = ("closed", "as-generated")
HEAD_LAYOUTS = ("cross_attention_heads", "encoder_attention_heads", "memory_attention_heads",
                "memory_pre_attention_heads")


@dataclass(frozen=True)
class RxTConfig:
    """Every size and switch of a Reactive Transformer."""

    vocab_size: int = 20_000  # shared by decoder and encoder (one embedding)
    dim: int = 256  # model width D
    num_layers: int = 12  # decoder layers = encoder layers = STM layers L (layer l talks to layer l)
    num_heads: int = 16  # head size = dim // num_heads
    query_heads: int = 8  # SQA query heads used by every attention
    kv_heads: int = 8  # key/value heads (grouped); query_heads must be a multiple
    decoder_ff: str = "moe"  # one of DECODER_FFS: routed experts, or one dense SwiGLU (rxlm's use_moe=False)
    num_experts: int = 36  # decoder MoE experts per layer (1 when dense)
    experts_per_token: int = 6  # top-k routing (1 when dense)
    expert_dim: int = 384  # SwiGLU hidden size of one expert (of the dense feed-forward, when dense)
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
    # What memory reads for a turn the model answered (one of INTERACTION_WRITES; rxmrl.model.interaction).
    # "as-generated" = query [A] and the ids exactly as generated: what the reference's interact writes, so
    # the converter sets it. "closed" = query [A] answer [EOS], the answer cut at its first [EOS], [PAD] ids
    # dropped, and an [EOS] closing an answer that the token limit cut: models trained here keep it. It is the
    # only form their supervised stages write, and measured on the quickstart's warm start with its own
    # answers written (experiments/compare_interaction_write.py) the forms write the same turns at the eval's
    # 48-token limit and recall the same within the paired intervals where a tighter limit cuts most answers.
    interaction_write: str = "closed"

    # Variants that checkpoints converted from the reference formats use (rxmrl.convert); the defaults
    # are rxmrl's own architecture. A head layout is (query heads, kv heads); None = (query_heads, kv_heads).
    cross_attention_heads: tuple[int, int] | None = None  # decoder memory cross-attention
    encoder_attention_heads: tuple[int, int] | None = None  # encoder self-attention
    memory_attention_heads: tuple[int, int] | None = None  # memory attention's read of the encoded data
    memory_pre_attention_heads: tuple[int, int] | None = None  # memory attention's self / interlayer step
    memory_attention_stages: str = "parallel"  # one of MEMORY_ATTENTION_STAGES (see model/memory.py)
    attention_output_bias: bool = False  # bias on the output projection of decoder and encoder attention
    memory_attention_output_bias: bool = False  # the same in memory attention
    shared_experts: int = 0  # always-active SwiGLU experts added to the routed mixture (0 or 1)
    shared_expert_dim: int | None = None  # hidden size of the shared expert (None: expert_dim)
    shared_expert_bias: bool = False  # biases in the shared expert's projections
    moe_output_bias: bool = False  # one learned [D] bias added to the routed experts' output
    expert_bias: bool = False  # biases in every routed expert's projections
    encoder_ff_bias: bool = False  # biases in the encoder's SwiGLU projections
    final_norm: str = "rms"  # one of FINAL_NORMS: the decoder's norm before the LM head
    lm_head_bias: bool = False

    def __post_init__(self) -> None:
        for name in HEAD_LAYOUTS:  # JSON gives lists; keep tuples so configs compare and hash
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2:
                    raise ValueError(f"{name}={value!r}, expected (query heads, kv heads)")
                object.__setattr__(self, name, (int(value[0]), int(value[1])))
                if value[0] % value[1]:
                    raise ValueError(f"{name}={tuple(value)}: query heads must be a multiple of kv heads")
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
            ("memory_attention_stages", MEMORY_ATTENTION_STAGES),
            ("final_norm", FINAL_NORMS),
            ("decoder_ff", DECODER_FFS),
            ("interaction_write", INTERACTION_WRITES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}, expected one of {allowed}")

        if self.decoder_ff == "dense" and (self.num_experts, self.experts_per_token, self.shared_experts,
                                           self.moe_output_bias) != (1, 1, 0, False):
            raise ValueError("decoder_ff='dense' is one SwiGLU of expert_dim: it needs num_experts=1, "
                             "experts_per_token=1, shared_experts=0, moe_output_bias=False")
        if self.shared_experts not in (0, 1):
            raise ValueError(f"shared_experts={self.shared_experts}, expected 0 or 1")
        if self.memory_attention_stages == "sequential" and self.memory_attention == "self":
            raise ValueError("memory_attention='self' has no sequential form; use 'simple', 'interlayer' "
                             "or 'self-interlayer'")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def heads(self, layout: str | None = None) -> tuple[int, int]:
        """``(query heads, kv heads)`` of one attention (a name in HEAD_LAYOUTS; None: self-attention)."""
        value = None if layout is None else getattr(self, layout)
        return value if value is not None else (self.query_heads, self.kv_heads)

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
    "rxt-alpha-mini-decoder": RxTConfig(vocab_size=10_000, num_layers=8, num_experts=16, experts_per_token=2,
                                        expert_dim=512, stm_slots=1024, max_seq_len=1024, decoder_only=True),
    # Trains in seconds to minutes on 2 CPU cores; set vocab_size from the tokenizer.
    "nano": RxTConfig(vocab_size=4096, dim=64, num_layers=2, num_heads=4, query_heads=2, kv_heads=2, num_experts=4,
                      experts_per_token=2, expert_dim=128, encoder_ff_dim=192, stm_slots=32),
    # Our own intermediate scale for one GPU, not a published model: the published RxT-Alpha Micro cards do
    # not give enough of their shape (width, expert size, STM) to rebuild, and disagree on vocab and size.
    "micro": RxTConfig(vocab_size=8192, dim=128, num_layers=4, num_heads=8, query_heads=4, kv_heads=4, num_experts=8,
                       experts_per_token=2, expert_dim=256, encoder_ff_dim=384, stm_slots=64),
}


def get_preset(name: str, **overrides: Any) -> RxTConfig:
    """The named preset, with fields overridden (``get_preset("nano", vocab_size=3000)``); an unknown name is a
    ``ValueError`` naming the presets, so a config section that checks its preset here fails in one line."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is not an RxT preset; expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
