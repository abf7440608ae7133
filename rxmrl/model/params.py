"""Parameter counts per component, compared with the published RxT-Alpha figures.

The published figures count the shared embedding in both the decoder and the encoder, so their total is
the sum of the components; we count the same way. "Active" decoder parameters are those one token uses:
everything except the experts it is not routed to. The encoder's MLM head (a training head) is listed on
its own and left out of the encoder figure.
"""

from __future__ import annotations

import torch
from torch import nn

from rxmrl.model.config import RxTConfig

PUBLISHED: dict[str, dict[str, float]] = {
    "rxt-alpha-supervised": {
        "decoder": 141e6, "decoder_active": 34.8e6, "encoder": 13.8e6,
        "memory_attention": 5.53e6, "total": 160e6,
    },
    "rxt-alpha-mini-decoder": {"decoder": 60e6},
}


def _numel(module: nn.Module | None, skip: set[int] = frozenset()) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``decoder``, ``decoder_active``, ``encoder``, ``mlm_head``, ``memory_attention``, ``total``."""
    from rxmrl.model.layers import MoE

    config: RxTConfig = model.config
    decoder = _numel(model.decoder)  # includes the shared embedding
    experts = sum(m.w_gate.numel() + m.w_up.numel() + m.w_down.numel()
                  for m in model.decoder.modules() if isinstance(m, MoE))
    active = decoder - experts + experts * config.experts_per_token // config.num_experts
    mlm = 0
    if model.encoder is not None and config.mlm_head:
        mlm = _numel(model.encoder.mlm_head) + _numel(model.encoder.mlm_norm)
    encoder = _numel(model.encoder) - mlm
    memory_attention = _numel(model.memory_attention)
    return {
        "decoder": decoder,
        "decoder_active": active,
        "encoder": encoder,
        "mlm_head": mlm,
        "memory_attention": memory_attention,
        "total": decoder + encoder + memory_attention,
    }
