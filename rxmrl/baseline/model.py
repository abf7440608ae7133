"""A decoder-only (Llama) causal LM of about the same size as a Reactive Transformer preset.

The stateless baseline answers every turn by re-reading the whole conversation, so the comparison with RxT
is fair only at equal capacity. We match the RxT *total* parameter count (decoder with all its experts +
memory encoder + memory attention, :func:`rxmrl.model.count_parameters`), because that is what a user
trains and stores; ``match="decoder_active"`` matches the per-token compute instead.

Shape choices: the same width ``dim`` and head size as the RxT preset (``num_heads`` heads, ``kv_heads``
key/value heads), depth = decoder + encoder layers (``2 * num_layers``), the same vocabulary and special
ids, and an untied LM head when the preset's is untied. The SwiGLU width ``intermediate_size`` is then the
one free knob; the count is linear in it,

    N(I) = N(0) + 3 * dim * I * layers,

so ``I = (target - N(0)) / (3 * dim * layers)``, rounded to a multiple of 8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from rxmrl.special_tokens import BOS_ID, EOS_ID, PAD_ID

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

    from rxmrl.model import RxTConfig

MatchTarget = Literal["total", "decoder", "decoder_active"]
SIZE_TOLERANCE = 0.03
"""Built models are within 3% of the target count (the multiple-of-8 rounding of the FFN width)."""


def rxt_target_parameters(rxt: RxTConfig, match: MatchTarget = "total") -> int:
    """The RxT parameter count the baseline is sized to (``count_preset(rxt)[match]``)."""
    from rxmrl.model import count_preset

    counts = count_preset(rxt)
    if match not in ("total", "decoder", "decoder_active"):
        raise ValueError(f"match={match!r}: expected 'total', 'decoder' or 'decoder_active'")
    return counts[match]


def llama_config(rxt: RxTConfig, intermediate_size: int, max_position_embeddings: int = 2048,
                 num_layers: int | None = None) -> LlamaConfig:
    """A Llama config with the RxT preset's width, heads, vocabulary and special ids."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=rxt.vocab_size,
        hidden_size=rxt.dim,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers or 2 * rxt.num_layers,
        num_attention_heads=rxt.num_heads,
        num_key_value_heads=rxt.num_heads // (rxt.query_heads // rxt.kv_heads),
        head_dim=rxt.head_dim,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=rxt.norm_eps,
        initializer_range=rxt.init_std,
        rope_parameters={"rope_type": "default", "rope_theta": rxt.rope_theta},
        tie_word_embeddings=rxt.tie_lm_head,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )


def count_llama(config: LlamaConfig) -> int:
    """Parameter count of a Llama config, built on the meta device (no memory, no time)."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


def size_matched_config(rxt: RxTConfig, match: MatchTarget = "total", max_position_embeddings: int = 2048,
                        num_layers: int | None = None) -> LlamaConfig:
    """The Llama config whose parameter count is closest to the RxT preset's ``match`` count."""
    target = rxt_target_parameters(rxt, match)
    base = llama_config(rxt, 8, max_position_embeddings, num_layers)
    layers = base.num_hidden_layers
    fixed = count_llama(base) - 3 * rxt.dim * 8 * layers  # N(0): everything but the SwiGLU weights
    per_unit = 3 * rxt.dim * layers
    if target <= fixed + 8 * per_unit:
        raise ValueError(f"the RxT {match} count {target:,} is too small for a {layers}-layer Llama of width "
                         f"{rxt.dim} (its embeddings and attention alone take {fixed:,}); pass fewer num_layers")
    intermediate = max(8, round((target - fixed) / per_unit / 8) * 8)
    return llama_config(rxt, intermediate, max_position_embeddings, num_layers)


def build_stateless_model(rxt: RxTConfig, match: MatchTarget = "total", max_position_embeddings: int = 2048,
                          num_layers: int | None = None, seed: int | None = None) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` of about the RxT preset's size (see the module docstring).

    ``rxt.vocab_size`` must already be the tokenizer's (``get_preset("nano", vocab_size=tok.vocab_size)``).
    """
    from transformers import LlamaForCausalLM

    config = size_matched_config(rxt, match, max_position_embeddings, num_layers)
    if seed is not None:
        torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = BOS_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    return model


def size_report(model: torch.nn.Module, rxt: RxTConfig, match: MatchTarget = "total") -> dict[str, float]:
    """``stateless``, ``rxt`` (the ``match`` count) and their ``relative_difference``."""
    ours = sum(p.numel() for p in model.parameters())
    target = rxt_target_parameters(rxt, match)
    return {"stateless": ours, "rxt": target, "relative_difference": (ours - target) / target}
