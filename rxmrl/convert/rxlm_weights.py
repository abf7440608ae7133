"""RxLM ``RxTAlpha`` tensors -> our ``ReactiveTransformer`` state dict.

Every reference tensor is either mapped or in the list of tensors that do not carry function (RoPE tables,
STM buffers, the decoder's own embedding that ``share_components`` replaces by the encoder's); every tensor of
ours must be filled. Anything else is an error naming the tensors, so a checkpoint that lost a tensor (the
tied save of the reference drops some) fails loudly instead of loading a random one.

Layout changes on the way:

- RoPE: the reference rotates adjacent channel pairs ``(2i, 2i+1)``, we rotate ``(i, i + d_h/2)``. Permuting
  the output rows of ``W_q`` and ``W_k`` within every head by ``P = [0, 2, 4, ..., 1, 3, 5, ...]`` makes our
  rotation of ``P q`` equal ``P`` applied to theirs, and ``(P q) . (P k) = q . k``, so scores are unchanged.
- SwiGLU: the reference's first projection is ``[W_up; W_gate]`` (``y = up * silu(gate)``) in one ``[2H, D]``
  matrix (``[E, D, 2H]`` for stacked experts); ours keeps ``gate``, ``up``, ``down`` apart.
- Vocabulary rows: relabelled by :class:`~rxmrl.convert.vocab.VocabMapping`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from rxmrl.convert.errors import ConversionError
from rxmrl.convert.vocab import BLOCKED_LOGIT, VocabMapping
from rxmrl.model.config import RxTConfig

TIED = {"encoder.model.embedding.weight": "decoder.model.embedding.weight",
        "memory_attention.model.stm.memory": "decoder.model.stm.memory"}
"""Tensor -> its twin after ``share_components``, which makes the decoder hold the encoder's embedding and the
memory attention's STM: ``save_pretrained`` then stores each shared tensor once, under the decoder's name."""

INERT = re.compile(r"(\.rope\.(inv_freq|cache)$)|(\.stm\.memory$)|(^decoder\.model\.embedding\.weight$)")
"""Reference tensors that carry no function once converted (recomputed, reset, or replaced when tied)."""


def retie(tensors: dict[str, Tensor]) -> dict[str, str]:
    """Put back the tensors a tied save dropped (in place), from their shared twins; returns ``{put back: from}``.

    The reference loads such a save without complaint and then ties a randomly initialised embedding into the
    decoder; the twin is the only copy of the trained one, so it is taken here."""
    reconstructed = {}
    for dropped, twin in TIED.items():
        if dropped not in tensors and twin in tensors:
            tensors[dropped] = tensors[twin]
            reconstructed[dropped] = twin
    return reconstructed


def rope_rows(head_dim: int) -> Tensor:
    """``P``: for our channel ``j`` the reference channel it holds (pair ``(2i, 2i+1)`` -> ``(i, i + d/2)``)."""
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


class _Source:
    """The reference tensors, handed out once each."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.tensors = {k: v.float() for k, v in tensors.items()}
        self.used: set[str] = set()

    def take(self, key: str) -> Tensor:
        if key not in self.tensors:
            raise ConversionError(f"the reference checkpoint has no tensor {key!r}")
        self.used.add(key)
        return self.tensors[key]

    def left(self) -> list[str]:
        return sorted(k for k in self.tensors if k not in self.used and not INERT.search(k))


def _attention(src: _Source, ours: str, theirs: str, head_dim: int, out: dict[str, Tensor], bias: bool,
               relabel: tuple[str, ...] = ("q", "k")) -> None:
    """One attention; ``relabel``: the projections whose rows get the RoPE channel order (module docstring)."""
    rows = rope_rows(head_dim)
    for name in ("q", "k"):
        if name not in relabel:
            out[f"{ours}.{name}_proj.weight"] = src.take(f"{theirs}.{name}_proj.weight")
            continue
        weight = src.take(f"{theirs}.{name}_proj.weight")  # [H * d_h, D]
        heads = weight.shape[0] // head_dim
        out[f"{ours}.{name}_proj.weight"] = weight.view(heads, head_dim, -1)[:, rows].reshape(weight.shape)
    out[f"{ours}.v_proj.weight"] = src.take(f"{theirs}.v_proj.weight")
    out[f"{ours}.o_proj.weight"] = src.take(f"{theirs}.out_proj.weight")
    if bias:
        out[f"{ours}.o_proj.bias"] = src.take(f"{theirs}.out_proj.bias")


def _swiglu(src: _Source, ours: str, theirs: str, out: dict[str, Tensor], bias: bool) -> None:
    """A reference gated FFN (``fc1.linear`` = ``[W_up; W_gate]``, ``fc2``) as our ``gate``/``up``/``down``."""
    up, gate = src.take(f"{theirs}.fc1.linear.weight").chunk(2, dim=0)
    out[f"{ours}.up.weight"], out[f"{ours}.gate.weight"] = up, gate
    out[f"{ours}.down.weight"] = src.take(f"{theirs}.fc2.weight")
    if bias:
        up_bias, gate_bias = src.take(f"{theirs}.fc1.linear.bias").chunk(2, dim=0)
        out[f"{ours}.up.bias"], out[f"{ours}.gate.bias"] = up_bias, gate_bias
        out[f"{ours}.down.bias"] = src.take(f"{theirs}.fc2.bias")


def _gate(src: _Source, ours: str, theirs: str, kind: str, out: dict[str, Tensor]) -> None:
    if kind == "none":
        return
    if kind == "slot-linear":
        out[f"{ours}.slot_linear.weight"] = src.take(f"{theirs}.gate.weight")
        out[f"{ours}.slot_linear.bias"] = src.take(f"{theirs}.gate.bias")
    else:
        out[f"{ours}.weight"] = src.take(f"{theirs}.gate")  # [S, 1]


def decoder_attention_block(src: _Source, ours: str, theirs: str, config: RxTConfig, out: dict[str, Tensor],
                            cross_relabel: tuple[str, ...] = ("q", "k")) -> None:
    """A reference decoder layer's norms and attentions (the same names in RxLM and RxNN)."""
    bias = config.attention_output_bias
    out[f"{ours}.self_norm.weight"] = src.take(f"{theirs}.norm1.weight")
    _attention(src, f"{ours}.self_attn", f"{theirs}.attention", config.head_dim, out, bias)
    out[f"{ours}.memory_norm.weight"] = src.take(f"{theirs}.norm2.weight")
    out[f"{ours}.memory_kv_norm.weight"] = src.take(f"{theirs}.stm_norm.weight")
    _attention(src, f"{ours}.memory_cross_attn", f"{theirs}.memory_cross_attention", config.head_dim, out, bias,
               relabel=cross_relabel)
    out[f"{ours}.ff_norm.weight"] = src.take(f"{theirs}.norm3.weight")


def _decoder(src: _Source, config: RxTConfig, mapping: VocabMapping, out: dict[str, Tensor]) -> None:
    for i in range(config.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"decoder.model.layers.{i}"
        decoder_attention_block(src, ours, theirs, config, out)
        if config.decoder_ff == "dense":  # rxlm's use_moe=False: one gated FFN with biases
            _swiglu(src, f"{ours}.ff", f"{theirs}.ff", out, config.expert_bias)
            continue
        moe, ff = f"{ours}.moe", f"{theirs}.ff"
        out[f"{moe}.router.weight"] = src.take(f"{ff}.router.gate.weight")
        up, gate = src.take(f"{ff}.w1").chunk(2, dim=-1)  # [E, D, 2H] -> [E, D, H] each
        out[f"{moe}.w_up"], out[f"{moe}.w_gate"] = up, gate
        out[f"{moe}.w_down"] = src.take(f"{ff}.w2")
        if config.moe_output_bias:
            out[f"{moe}.output_bias"] = src.take(f"{ff}.global_bias")
        if config.shared_experts:
            _swiglu(src, f"{moe}.shared", f"{ff}.shared_expert", out, config.shared_expert_bias)
    if config.final_norm != "none":
        out["decoder.norm.weight"] = src.take("decoder.model.head_norm.weight")
        if config.final_norm == "layer":
            out["decoder.norm.bias"] = src.take("decoder.model.head_norm.bias")
    out["decoder.lm_head.weight"] = mapping.rows(src.take("decoder.model.head.weight"))
    out["decoder.lm_head.bias"] = mapping.rows(src.take("decoder.model.head.bias"), fill=BLOCKED_LOGIT)


def _encoder(src: _Source, config: RxTConfig, out: dict[str, Tensor]) -> None:
    for i in range(config.num_layers):
        ours, theirs = f"encoder.layers.{i}", f"encoder.model.layers.{i}"
        out[f"{ours}.attn_norm.weight"] = src.take(f"{theirs}.norm1.weight")
        _attention(src, f"{ours}.attn", f"{theirs}.attention", config.head_dim, out, config.attention_output_bias)
        out[f"{ours}.ff_norm.weight"] = src.take(f"{theirs}.norm3.weight")
        _swiglu(src, f"{ours}.ff", f"{theirs}.ff", out, config.encoder_ff_bias)
        # An encoder built with memory cross-attention never uses it (the reference passes it no STM).
        for unused in (f"{theirs}.norm2.weight", f"{theirs}.stm_norm.weight"):
            src.used.add(unused)
        src.used.update(k for k in src.tensors if k.startswith(f"{theirs}.memory_cross_attention."))


def _memory_attention(src: _Source, config: RxTConfig, out: dict[str, Tensor]) -> None:
    model, gate = "memory_attention.model", config.residual_gate
    out["memory_attention.mean_norm.weight"] = src.take(f"{model}.mean_stm_norm.weight")
    for i in range(config.num_layers):
        ours = f"memory_attention.layers.{i}"
        out[f"{ours}.pre_norm.weight"] = src.take(f"{model}.mean_memory_norm_layers.{i}.weight")
        _gate(src, f"{ours}.mix_gate", f"{model}.interlayer_gate_layers.{i}", gate, out)
        _attention(src, f"{ours}.pre_attn", f"{model}.mean_attention_layers.{i}", config.head_dim, out, True)
        _gate(src, f"{ours}.pre_gate", f"{model}.mean_residual_gate_layers.{i}", gate, out)
        out[f"{ours}.query_norm.weight"] = src.take(f"{model}.memory_norm_layers.{i}.weight")
        out[f"{ours}.encoded_norm.weight"] = src.take(f"{model}.memory_input_norm_layers.{i}.weight")
        _attention(src, f"{ours}.attn", f"{model}.attention_layers.{i}", config.head_dim, out, True)
        _gate(src, f"{ours}.gate", f"{model}.residual_gate_layers.{i}", gate, out)


def rxlm_state_dict(tensors: dict[str, Tensor], config: RxTConfig, mapping: VocabMapping,
                    expected: dict[str, Any]) -> dict[str, Tensor]:
    """Our state dict (keys and shapes of ``expected``) from the reference ``RxTAlpha`` tensors."""
    src = _Source(tensors)
    out: dict[str, Tensor] = {}
    embedding = mapping.rows(src.take("encoder.model.embedding.weight"))  # the shared one after tying
    for key in ("embedding.weight", "decoder.embedding.weight", "encoder.embedding.weight"):
        out[key] = embedding
    _decoder(src, config, mapping, out)
    _encoder(src, config, out)
    _memory_attention(src, config, out)
    left = src.left()
    if left:
        raise ConversionError(f"reference tensors with no place in the converted model: {left}")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ConversionError(f"converted model tensors that the reference checkpoint does not fill: {missing}")
    for key, value in out.items():
        if key not in expected:
            raise ConversionError(f"converted tensor {key!r} has no place in our model")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ConversionError(f"{key}: reference shape {tuple(value.shape)}, ours {tuple(expected[key].shape)}")
    return out
