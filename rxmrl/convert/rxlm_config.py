"""RxLM (``rxlm`` 0.3.x) ``RxTAlpha`` configurations -> :class:`RxTConfig`, field by field.

A reference ``config.json`` holds only the arguments its author passed; every other field takes the
reference constructor's default. Each field below is either mapped onto ours, accepted because it cannot
change what the model computes at inference (kernel choice, dropout, init-only values, switches of options
that are off), or refused with its name and the value we would need. An unknown field is refused too: a field
this table has never seen may change the function.

Supported, per component:

- decoder: SQA / GQA / MQA / MHA heads (self and memory cross-attention may differ), RoPE, RMSNorm, a dense
  SwiGLU with biases (``use_moe=False``, rxlm's default) or a vectorized MoE of SwiGLU experts with softmax
  top-k renormalised routing, ``moe_bias_mode`` global | off, 0 or 1 shared expert with
  ``moe_shared_experts_bias_mode`` local | off, attention output bias on or off, head norm none | rms_norm |
  layer_norm, LM head with bias;
- encoder: dense SwiGLU with biases, its own head layout;
- memory attention: the self-interlayer form that ``RxTAlpha`` builds (``interlayer`` and ``self-interlayer``
  give the same module there), classic RMSNorm memory norms, no gate or per-slot static | elementwise | linear
  gates with the mean slot status, sigmoid or tanh.

A converted model writes each turn as the reference's ``interact`` does: the query, [A] and the ids as generated
(``interaction_write="as-generated"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rxmrl.convert.errors import ConversionError
from rxmrl.model.config import RxTConfig

Rule = Callable[[Any], bool]
SILU = ("swish", "silu")
NORM_EPS = 2.0 ** -23  # float32 machine epsilon: torch.nn.RMSNorm(eps=None), what the reference uses


def _is(*allowed: Any) -> Rule:
    return lambda value: value in allowed


def _empty(value: Any) -> bool:
    return value is None or value == []


ANY: Rule = lambda value: True  # noqa: E731  (accepted: no effect on inference)

# field -> (reference default, rule for accepted values). Mapped fields are read by rxlm_to_config.
COMPONENT_FIELDS: dict[str, tuple[Any, Rule]] = {
    "num_layers": (12, ANY), "vocab_size": (20000, ANY), "embed_dim": (512, ANY), "ff_dim": (1536, ANY),
    "att_heads": (16, ANY), "seq_len": (1024, ANY), "stm_size": (1024, ANY), "rope_base": (10_000, ANY),
    "use_flash_attention": (False, ANY), "ff_dropout": (0.0, ANY), "att_dropout": (0.0, ANY),
    "use_gated": (True, _is(True)), "ff_activation": ("swish", _is(*SILU)), "use_rms_norm": (True, _is(True)),
    "att_groups": (1, ANY), "att_query_groups": (None, ANY), "self_att_type": ("sqa", _is("sqa", "gqa", "mqa", "mha")),
    "cross_att_type": ("sqa", _is("sqa", "gqa", "mqa", "mha")), "cross_att_groups": (None, ANY),
    "cross_att_query_groups": (None, ANY), "use_moe": (False, ANY), "num_experts": (1, ANY),
    "num_shared_experts": (1, _is(0, 1)), "shared_expert_dim": (None, ANY), "moe_top_k": (1, ANY),
    "use_head_norm": (False, ANY), "head_norm_type": ("layer_norm", _is("layer_norm", "rms_norm")),
    "init_identity_norm": (False, ANY), "skip_memory_cross_attention": (False, ANY),
    "stateless_layers_config": (None, _empty), "final_stateless_layers_config": (None, _empty),
    "dense_layer_dim": (1536, ANY), "attn_layer_types": (None, _empty), "stateless_attn_layer_types": (None, _empty),
    "final_stateless_attn_layer_types": (None, _empty), "linear_attn_mode": ("chunk", ANY),
    "linear_attn_expand_k": (0.5, ANY), "linear_attn_expand_v": (1.0, ANY), "linear_attn_use_short_conv": (False, ANY),
    "linear_attn_conv_size": (4, ANY), "linear_attn_use_gate": (True, ANY), "linear_attn_norm_eps": (1e-5, ANY),
    "linear_attn_heads": (None, ANY), "use_nope": (False, _is(False)), "router_amp": (False, ANY),
    "router_dtype": ("float32", ANY), "use_vectorized_moe": (True, _is(True)),
    "vectorized_moe_from_legacy": (False, _is(False)), "moe_grouped_gemm": (True, ANY),
    "moe_bias_mode": ("global", _is("global", "off")), "moe_shared_experts_bias_mode": ("local", _is("local", "off")),
    "moe_use_weighted_shared_experts": (False, _is(False)), "use_gated_attention": (False, _is(False)),
    "gated_attention_activation": ("sigmoid", ANY), "use_gated_cross_attention": (None, _is(None, False)),
    "use_attention_output_bias": (True, ANY), "legacy_stm_in_encoder": (False, ANY),
    "moe_use_cutlass_grouped_gemm": (True, ANY),
}
"""The ``linear_attn_*`` and ``dense_layer_dim`` fields act only with hybrid or stateless layers (refused)."""

MEMORY_FIELDS: dict[str, tuple[Any, Rule]] = {
    "num_layers": (12, ANY), "embed_dim": (512, ANY), "att_heads": (16, ANY), "seq_len": (1024, ANY),
    "stm_size": (1024, ANY), "rope_base": (10_000, ANY), "use_flash_attention": (False, ANY),
    "att_dropout": (0.0, ANY), "att_groups": (1, ANY), "att_type": ("sqa", _is("sqa", "gqa", "mqa", "mha")),
    "att_experts": (None, ANY), "att_query_experts": (None, ANY), "att_query_groups": (None, ANY),
    "interlayer_att_dropout": (0.0, ANY), "interlayer_att_groups": (1, ANY),
    "interlayer_att_type": ("sqa", _is("sqa", "gqa", "mqa", "mha")), "interlayer_att_experts": (None, ANY),
    "interlayer_att_query_experts": (None, ANY), "interlayer_att_query_groups": (None, ANY),
    "norm_type": ("classic-rms", _is("classic-rms")), "norm_init_gate": (-2.0, ANY),
    "norm_per_dim_scale": (False, ANY), "norm_decay": (0.9, ANY), "use_gated_residual": (False, ANY),
    "residual_per_slot_gate": (True, _is(True)), "residual_gate_init": (3.0, ANY),
    "residual_gate_type": ("static", _is("static", "elementwise", "linear")),
    "residual_gate_slot_status_type": ("mean", _is("mean")), "use_tanh_residual_gate": (True, ANY),
    "debug_mode": (False, ANY), "debug_interval": (10, ANY), "num_groups": (1, ANY),
}
"""``att_experts`` & co act only with the experimental attention types (refused); ``norm_*`` only with the
adaptive memory norms (refused); ``num_groups`` only in the grouped variant (refused)."""

MODEL_FIELDS = ("decoder_config", "encoder_config", "memory_attention_config", "tokenizer_config",
                "memory_attention_variant", "tokenizer")
MEMORY_VARIANTS = ("interlayer", "self-interlayer")  # the reference builds self-interlayer for both
GATES = {"static": "slot-constant", "elementwise": "slot-scaled", "linear": "slot-linear"}
TOKENIZER_ROLES = {"pad_token_id": "pad", "bos_token_id": "bos", "eos_token_id": "eos",
                   "query_token_id": "query", "answer_token_id": "answer"}


def resolve(config: dict[str, Any], fields: dict[str, tuple[Any, Rule]], where: str) -> dict[str, Any]:
    """The full reference config (defaults filled in); refuses unknown fields and unsupported values."""
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ConversionError(f"{where}: unknown field(s) {unknown}; this converter knows the rxlm 0.3 fields "
                              "and refuses others, which may change the model")
    full = {name: config.get(name, default) for name, (default, _) in fields.items()}
    for name, (_, rule) in fields.items():
        if not rule(full[name]):
            raise ConversionError(f"{where}.{name}={full[name]!r} is not supported")
    return full


def heads(kind: str, heads_total: int, groups: int, query_groups: int | None, where: str) -> tuple[int, int]:
    """``(query heads, kv heads)`` of a reference attention type."""
    if kind == "mha":
        return heads_total, heads_total
    if kind == "mqa":
        return heads_total, 1
    if kind == "gqa":
        return heads_total, groups
    if query_groups is None:
        raise ConversionError(f"{where}: SQA needs its query group count (att_query_groups)")
    if query_groups < groups or query_groups % groups:
        raise ConversionError(f"{where}: {query_groups} query heads over {groups} key/value heads is not "
                              "supported (reversed SQA); expected a multiple")
    return query_groups, groups


def _agree(values: dict[str, Any], name: str) -> Any:
    distinct = set(values.values())
    if len(distinct) != 1:
        raise ConversionError(f"components disagree on {name}: {values}")
    return distinct.pop()


def rxlm_to_config(model_config: dict[str, Any], vocab_size: int) -> RxTConfig:
    """Our config for a reference ``RxTAlpha`` config (``vocab_size`` after relabelling the vocabulary)."""
    unknown = sorted(set(model_config) - set(MODEL_FIELDS))
    if unknown:
        raise ConversionError(f"RxTAlpha config: unknown field(s) {unknown}")
    variant = model_config.get("memory_attention_variant", "interlayer")
    if variant not in MEMORY_VARIANTS:
        raise ConversionError(f"memory_attention_variant={variant!r} is not supported; expected one of "
                              f"{MEMORY_VARIANTS}")
    dec = resolve(model_config["decoder_config"], COMPONENT_FIELDS, "decoder_config")
    enc = resolve(model_config["encoder_config"], COMPONENT_FIELDS, "encoder_config")
    mem = resolve(model_config["memory_attention_config"], MEMORY_FIELDS, "memory_attention_config")
    if dec["skip_memory_cross_attention"]:
        raise ConversionError("decoder_config.skip_memory_cross_attention=True is not supported")
    if enc["use_moe"]:
        raise ConversionError("encoder_config.use_moe=True is not supported: our encoder is dense")
    if dec["router_amp"] and dec["router_dtype"] != "float32":
        raise ConversionError(f"decoder_config.router_dtype={dec['router_dtype']!r} under router_amp is not "
                              "supported; expected float32")
    components = {"decoder_config": dec, "encoder_config": enc, "memory_attention_config": mem}
    shared = {name: _agree({k: c[name] for k, c in components.items()}, name)
              for name in ("num_layers", "embed_dim", "att_heads", "stm_size", "rope_base")}
    if dec["vocab_size"] != enc["vocab_size"]:
        raise ConversionError(f"decoder vocab_size {dec['vocab_size']} != encoder vocab_size {enc['vocab_size']}")
    bias = _agree({"decoder_config": dec["use_attention_output_bias"],
                   "encoder_config": enc["use_attention_output_bias"]}, "use_attention_output_bias")
    self_heads = heads(dec["self_att_type"], dec["att_heads"], dec["att_groups"], dec["att_query_groups"],
                       "decoder_config")
    cross_heads = heads(dec["cross_att_type"], dec["att_heads"], dec["cross_att_groups"] or dec["att_groups"],
                        dec["cross_att_query_groups"] or dec["att_query_groups"], "decoder_config.cross_att")
    gated = mem["use_gated_residual"]
    final = "none" if not dec["use_head_norm"] else {"rms_norm": "rms", "layer_norm": "layer"}[dec["head_norm_type"]]
    moe = dec["use_moe"]  # a dense decoder's feed-forward is one gated FFN with biases; MoE fields do nothing
    return RxTConfig(
        vocab_size=vocab_size,
        dim=shared["embed_dim"],
        num_layers=shared["num_layers"],
        num_heads=shared["att_heads"],
        query_heads=self_heads[0],
        kv_heads=self_heads[1],
        decoder_ff="moe" if moe else "dense",
        num_experts=dec["num_experts"] if moe else 1,
        experts_per_token=dec["moe_top_k"] if moe else 1,
        expert_dim=dec["ff_dim"],
        encoder_ff_dim=enc["ff_dim"],
        stm_slots=shared["stm_size"],
        max_seq_len=dec["seq_len"],
        memory_attention="self-interlayer",
        memory_attention_stages="sequential",
        residual_gate=GATES[mem["residual_gate_type"]] if gated else "none",
        gate_activation="tanh" if mem["use_tanh_residual_gate"] else "sigmoid",
        gate_init_bias=float(mem["residual_gate_init"]),
        slot_identity=False,
        stm_init="normal",
        stm_init_std=1.0,  # the reference resets its STM to N(0, 1)
        rope_theta=float(shared["rope_base"]),
        norm_eps=NORM_EPS,
        tie_lm_head=False,
        mlm_head=False,
        cross_attention_heads=cross_heads,
        encoder_attention_heads=heads(enc["self_att_type"], enc["att_heads"], enc["att_groups"],
                                      enc["att_query_groups"], "encoder_config"),
        memory_attention_heads=heads(mem["att_type"], mem["att_heads"], mem["att_groups"], mem["att_query_groups"],
                                     "memory_attention_config"),
        memory_pre_attention_heads=heads(mem["interlayer_att_type"], mem["att_heads"], mem["interlayer_att_groups"],
                                         mem["interlayer_att_query_groups"], "memory_attention_config.interlayer"),
        attention_output_bias=bool(bias),
        memory_attention_output_bias=True,  # the reference's memory attention always has it
        shared_experts=dec["num_shared_experts"] if moe else 0,
        shared_expert_dim=dec["shared_expert_dim"] or dec["ff_dim"],
        shared_expert_bias=dec["moe_shared_experts_bias_mode"] == "local",
        moe_output_bias=moe and dec["moe_bias_mode"] == "global",
        expert_bias=not moe,  # the reference's experts have no biases, its dense FFN has them
        encoder_ff_bias=True,  # the reference's dense SwiGLU always has biases
        final_norm=final,
        lm_head_bias=True,
        interaction_write="as-generated",  # the reference's interact writes the ids as generated
    )


def tokenizer_roles(model_config: dict[str, Any]) -> dict[str, int]:
    """The role ids an ``RxTAlpha`` config names (the ids its ``interact`` uses)."""
    given = model_config.get("tokenizer_config") or {}
    unknown = sorted(set(given) - set(TOKENIZER_ROLES))
    if unknown:
        raise ConversionError(f"tokenizer_config: unknown field(s) {unknown}")
    return {TOKENIZER_ROLES[k]: int(v) for k, v in given.items()}

