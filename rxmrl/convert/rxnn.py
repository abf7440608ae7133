"""RxNN (0.2.x) ``RxTDecoder`` checkpoints (the RxT-Alpha Mini decoder card) -> a decoder-only rxmrl model.

RxNN is the reference framework's predecessor. Its decoder is the same block (pre-norm RMSNorm self-attention,
memory cross-attention to the STM, MoE), with three differences that matter here:

- experts are a list of gated FFNs with biases in every projection (``expert_bias``), no shared expert, no
  MoE output bias; the head norm, when on, is a LayerNorm;
- memory cross-attention takes its key/value head count from ``att_groups`` (``cross_att_groups`` is read
  only by the experimental attention types, which are refused);
- its RoPE reads channel pairs ``(2i, 2i+1)`` and writes the rotated pair back as ``(i, i + d_h/2)``. In
  self-attention both sides are rotated and so relabelled alike, and our channel order reproduces it by
  relabelling the rows of ``W_q`` and ``W_k``; in memory cross-attention only the queries are rotated, so the
  keys keep the original order: the rows of ``W_q`` are relabelled and ``W_k`` is left as it is.

Fields are mapped, accepted (no effect at inference) or refused by name, as in :mod:`rxlm_config`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rxmrl.convert.errors import ConversionError
from rxmrl.convert.rxlm_config import ANY, NORM_EPS, SILU, _is, heads, resolve

DECODER_FIELDS = {
    "num_layers": (12, ANY), "vocab_size": (20000, ANY), "embed_dim": (512, ANY), "ff_dim": (1536, ANY),
    "att_heads": (16, ANY), "seq_len": (1024, ANY), "stm_size": (1024, ANY), "use_flash_attention": (False, ANY),
    "use_gated": (True, _is(True)), "ff_activation": ("swish", _is(*SILU)), "ff_dropout": (0.0, ANY),
    "att_dropout": (0.0, ANY), "use_rms_norm": (True, _is(True)), "att_groups": (1, ANY), "use_moe": (False, _is(True)),
    "num_experts": (1, ANY), "moe_top_k": (1, ANY), "self_att_type": ("gqa", _is("sqa", "gqa", "mqa", "mha")),
    "cross_att_type": ("mqa", _is("sqa", "gqa", "mqa", "mha")), "att_experts": (None, ANY),
    "att_query_experts": (None, ANY), "att_query_groups": (None, ANY), "cross_att_groups": (None, ANY),
    "cross_att_query_groups": (None, ANY), "use_head_norm": (False, ANY), "init_identity_norm": (False, ANY),
    "skip_memory_cross_attention": (False, _is(False)),
}
"""``att_experts`` & co and ``cross_att_groups`` act only with the experimental attention types (refused)."""


def rxnn_to_config(config: dict[str, Any], vocab_size: int):
    """Our decoder-only config for an RxNN ``RxTDecoder`` config."""
    from rxmrl.model.config import RxTConfig

    dec = resolve(config, DECODER_FIELDS, "decoder config")
    self_heads = heads(dec["self_att_type"], dec["att_heads"], dec["att_groups"], dec["att_query_groups"],
                       "decoder config")
    cross_heads = heads(dec["cross_att_type"], dec["att_heads"], dec["att_groups"],
                        dec["cross_att_query_groups"] or dec["att_query_groups"], "decoder config.cross_att")
    return RxTConfig(
        vocab_size=vocab_size, dim=dec["embed_dim"], num_layers=dec["num_layers"], num_heads=dec["att_heads"],
        query_heads=self_heads[0], kv_heads=self_heads[1], num_experts=dec["num_experts"],
        experts_per_token=dec["moe_top_k"], expert_dim=dec["ff_dim"], stm_slots=dec["stm_size"],
        max_seq_len=dec["seq_len"], norm_eps=NORM_EPS, slot_identity=False, mlm_head=False, decoder_only=True,
        cross_attention_heads=cross_heads, attention_output_bias=True, expert_bias=True,
        final_norm="layer" if dec["use_head_norm"] else "none", lm_head_bias=True,
    )


def rxnn_decoder_state_dict(tensors: dict, config, mapping, expected: dict) -> dict:
    """Our state dict from an RxNN decoder's tensors (keys ``model.…``)."""
    import torch

    from rxmrl.convert.rxlm_weights import _Source, decoder_attention_block
    from rxmrl.convert.vocab import BLOCKED_LOGIT

    src = _Source(tensors)
    out = {}
    embedding = mapping.rows(src.take("model.embedding.weight"))
    out["embedding.weight"] = out["decoder.embedding.weight"] = embedding
    for i in range(config.num_layers):
        ours, theirs = f"decoder.layers.{i}", f"model.layers.{i}"
        decoder_attention_block(src, ours, theirs, config, out, cross_relabel=("q",))
        moe, ff = f"{ours}.moe", f"{theirs}.ff"
        out[f"{moe}.router.weight"] = src.take(f"{ff}.router.gate.weight")
        parts = {name: [] for name in ("w_up", "w_gate", "w_down", "b_up", "b_gate", "b_down")}
        for e in range(config.num_experts):
            up, gate = src.take(f"{ff}.experts.{e}.fc1.linear.weight").chunk(2, dim=0)  # [H, D] each
            up_bias, gate_bias = src.take(f"{ff}.experts.{e}.fc1.linear.bias").chunk(2, dim=0)
            parts["w_up"].append(up.T)
            parts["w_gate"].append(gate.T)
            parts["w_down"].append(src.take(f"{ff}.experts.{e}.fc2.weight").T)  # [H, D]
            parts["b_up"].append(up_bias)
            parts["b_gate"].append(gate_bias)
            parts["b_down"].append(src.take(f"{ff}.experts.{e}.fc2.bias"))
        out.update({f"{moe}.{name}": torch.stack(values) for name, values in parts.items()})
    if config.final_norm == "layer":
        out["decoder.norm.weight"] = src.take("model.head_norm.weight")
        out["decoder.norm.bias"] = src.take("model.head_norm.bias")
    out["decoder.lm_head.weight"] = mapping.rows(src.take("model.head.weight"))
    out["decoder.lm_head.bias"] = mapping.rows(src.take("model.head.bias"), fill=BLOCKED_LOGIT)
    left = src.left()
    if left:
        raise ConversionError(f"reference tensors with no place in the converted model: {left}")
    missing = sorted(set(expected) - set(out))
    if missing or set(out) - set(expected):
        raise ConversionError(f"converted tensors do not match our model: missing {missing}, "
                              f"extra {sorted(set(out) - set(expected))}")
    return out


def load_rxnn_decoder(source: str | os.PathLike, tokenizer: str | os.PathLike | None = None):
    """Convert an RxNN ``RxTDecoder`` folder or hub id (and its tokenizer) into a decoder-only model."""
    from pathlib import Path

    from tokenizers import Tokenizer

    from rxmrl.convert import REFERENCE_FILES, Converted, _read_json, _tokenizer_json, _weights, matching
    from rxmrl.convert.vocab import mapping_for, pad_tokenizer, relabel_tokenizer, role_ids
    from rxmrl.hub import local_folder
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    folder = local_folder(source, REFERENCE_FILES)
    config = _read_json(Path(folder) / "config.json")
    tokenizer_json, tokenizer_source = _tokenizer_json(tokenizer, Path(folder))
    try:
        tokenizer_json = pad_tokenizer(tokenizer_json, config.get("vocab_size", 20000))
        roles = role_ids(tokenizer_json)
    except ValueError as error:
        raise ConversionError(str(error)) from None
    mapping = mapping_for(tokenizer_json, roles)
    ours = rxnn_to_config(config, mapping.new_size)
    tensors = _weights(Path(folder))
    with matching(source):
        model = ReactiveTransformer(ours)
        model.load_state_dict(rxnn_decoder_state_dict(tensors, ours, mapping, model.state_dict()), strict=True)
    relabelled = RxTokenizer(Tokenizer.from_str(relabel_tokenizer(tokenizer_json, mapping, roles)))
    provenance = {"source": str(source), "tokenizer": tokenizer_source, "format": "rxnn-RxTDecoder",
                  "roles": roles, "added_tokens": mapping.added, "relabel": mapping.relabel}
    return Converted(model.eval(), relabelled, mapping, json.loads(json.dumps(provenance)))
