"""Short-Term Memory (STM) and the memory attention that writes it.

STM layout is batch-first: ``stm: [B, L, S, D]`` (batch, layers, slots, dim). Layer ``l`` of the STM is
read by decoder layer ``l`` (memory cross-attention) and written from encoder layer ``l``.

Memory attention, per layer ``l`` (``ED_l``: encoder layer ``l``'s output over the interaction)::

    P_l    = STM_l [+ SelfAttn(norm STM_l)] [+ InterlayerAttn(norm STM_l, norm mean_l' STM_l')]
    U_l    = Attn(q = norm(P_l + E), k, v = norm ED_l)      # RoPE on keys only; E: slot identity [S, D]
    G_l    = sigmoid(w_l * (STM_l + U_l) + b_l)             # elementwise, per slot; or Linear(STM + U)
    STM'_l = (1 - G_l) * STM_l + G_l * U_l                  # sigmoid gate
    STM'_l = (1 - G_l) * STM_l + (1 + G_l) * U_l            # tanh gate (G = tanh(...))
    STM'_l = STM_l + U_l                                    # no gate

Variants: ``simple`` (P = STM), ``self``, ``interlayer``, ``self-interlayer``. The residual base is the
old ``STM_l``, so a gate near 0 keeps memory exactly as it was.

``memory_attention_stages="sequential"`` is the staged form of the reference checkpoints (RxLM): every
step is its own gated residual and the write reads the pre-updated memory::

    N_l    = norm_pre STM_l;   M = norm_mean(mean_l' STM_l')           # one mean norm for all layers
    C_l    = Gate_mix(N_l, M)     (self-interlayer)   or   M   (interlayer)
    P_l    = Gate_pre(STM_l, Attn(q = N_l, k, v = C_l))                # ``simple``: P_l = STM_l
    STM'_l = Gate(P_l, Attn(q = norm(P_l [+ E]), k, v = norm ED_l))    # RoPE on keys only

Gate forms besides ours (``Gate(S, U)`` with ``x = S + U``; ``w``, ``b`` per slot, ``G: [B, S, 1]``)::

    slot-constant  G = act(w)                 slot-scaled  G = act(w * mean_d x)
    slot-linear    G = act(W mean_d x + b)    (W: [S, S], mixes slots)

Slot identity ``E`` (``slot_identity=True``; one learned ``[S, D]`` table shared by all layers, +S·D
parameters). Without it a slot's query is only its content: the fresh STM is random noise that differs in
every episode, so no slot can learn a stable role ("read the start of the interaction", "read the
answer"), and slots that ever hold similar content query identically from then on. Measured on the nano
preset: after memory-attention pre-training the slots of a layer collapsed to one vector (mean pairwise
cosine 0.998) and the decoder's follow-up loss was the same with the accumulated STM as with a reset one.
A learned per-slot query offset breaks that symmetry; with RoPE on the keys it can also select positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rxmrl.model.attention import Attention, Rotary
from rxmrl.model.config import RxTConfig
from rxmrl.model.layers import RMSNorm


class ResidualGate(nn.Module):
    """How much of the update enters memory, per slot and channel."""

    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        self.kind, self.activation = config.residual_gate, config.gate_activation
        slots = config.stm_slots
        if self.kind == "elementwise":
            self.weight = nn.Parameter(torch.zeros(slots, config.dim))  # [S, D]
            self.bias = nn.Parameter(torch.full((slots, 1), config.gate_init_bias))
        elif self.kind == "linear":
            self.linear = nn.Linear(config.dim, config.dim)
            nn.init.zeros_(self.linear.weight)
            nn.init.constant_(self.linear.bias, config.gate_init_bias)
        elif self.kind in ("slot-constant", "slot-scaled"):
            self.weight = nn.Parameter(torch.full((slots, 1), config.gate_init_bias))  # [S, 1]
        elif self.kind == "slot-linear":
            self.slot_linear = nn.Linear(slots, slots)
            nn.init.zeros_(self.slot_linear.weight)
            nn.init.constant_(self.slot_linear.bias, config.gate_init_bias)

    @torch.no_grad()
    def set_bias(self, value: float) -> None:
        """Set the gate's constant pre-activation to ``value``, keeping what it learned to read from ``STM + U``
        (``sigmoid(-2) = 0.12``: a write then keeps 88% of the old memory until the gate learns otherwise)."""
        if self.kind == "elementwise":
            self.bias.fill_(value)
        elif self.kind == "linear":
            self.linear.bias.fill_(value)
        elif self.kind == "slot-constant":
            self.weight.fill_(value)  # its pre-activation is the weight itself
        elif self.kind == "slot-linear":
            self.slot_linear.bias.fill_(value)
        else:
            raise ValueError(f"a {self.kind!r} residual gate has no bias to set")

    def gate(self, stm: Tensor, update: Tensor) -> Tensor:
        """Gate values ``[B, S, D]`` or ``[B, S, 1]`` (in (0, 1) for sigmoid, (-1, 1) for tanh)."""
        x = stm + update
        slots = self.weight.shape[0] if hasattr(self, "weight") else None
        if slots is not None and x.shape[1] != slots:
            raise ValueError(f"STM has {x.shape[1]} slots, the gate was built for {slots}")
        if self.kind == "elementwise":
            pre = x * self.weight + self.bias
        elif self.kind == "linear":
            pre = self.linear(x)
        elif self.kind == "slot-constant":
            pre = self.weight.expand(x.shape[0], -1, -1)  # [B, S, 1]
        elif self.kind == "slot-scaled":
            pre = self.weight * x.mean(-1, keepdim=True)  # [B, S, 1]
        else:
            pre = self.slot_linear(x.mean(-1))[..., None]  # [B, S] -> [B, S, 1]
        return torch.sigmoid(pre) if self.activation == "sigmoid" else torch.tanh(pre)

    def forward(self, stm: Tensor, update: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.kind == "none":
            return stm + update, None
        g = self.gate(stm, update)
        if self.activation == "sigmoid":
            return (1 - g) * stm + g * update, g
        return (1 - g) * stm + (1 + g) * update, g


def _pre_attention(config: RxTConfig) -> Attention:
    """Memory attention's self / interlayer attention over the STM (no positions: slots have no order)."""
    return Attention(config.dim, config.head_dim, *config.heads("memory_pre_attention_heads"), rope="none",
                     output_bias=config.memory_attention_output_bias)


def _write_attention(config: RxTConfig) -> Attention:
    """The attention that reads the encoded interaction (RoPE on its keys)."""
    return Attention(config.dim, config.head_dim, *config.heads("memory_attention_heads"), rope="key",
                     rope_theta=config.rope_theta, output_bias=config.memory_attention_output_bias)


class _WriteStep(nn.Module):
    """What both layer forms share: ``(base, queries) = prepare(STM_l, mean)``, then the write
    ``Gate(base, Attn(q = norm(queries [+ E]), k, v = norm ED_l))``."""

    def forward(
        self,
        stm: Tensor,
        stm_mean: Tensor,
        encoded: Tensor,
        encoded_mask: Tensor | None,
        rotary: Rotary | None = None,
        slot_identity: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``stm: [B, S, D]``, ``stm_mean: [B, S, D]``, ``encoded: [B, T, D]`` -> new ``[B, S, D]`` and the gate.

        ``slot_identity: [S, D]`` is added to the queries only (never written into memory).
        """
        base, queries = self.prepare(stm, stm_mean)
        return self.write(base, queries, encoded, encoded_mask, rotary, slot_identity)

    def prepare(self, stm: Tensor, stm_mean: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _add_write_modules(self, config: RxTConfig) -> None:
        # Registered last by each layer: the init draws follow module order, and checkpoints name them so.
        self.query_norm = RMSNorm(config.dim, config.norm_eps)
        self.encoded_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = _write_attention(config)
        self.gate = ResidualGate(config)

    def write(self, base: Tensor, queries: Tensor, encoded: Tensor, encoded_mask: Tensor | None,
              rotary: Rotary | None, slot_identity: Tensor | None) -> tuple[Tensor, Tensor | None]:
        k, v = self.attn.project_kv(self.encoded_norm(encoded), rotary)  # RoPE on keys: 0..T-1
        mask = None if encoded_mask is None else encoded_mask.bool()[:, None, None, :]  # [B,1,1,T]
        if slot_identity is not None:
            queries = queries + slot_identity
        update = self.attn(self.query_norm(queries), k, v, mask=mask)
        return self.gate(base, update)


class MemoryAttentionLayer(_WriteStep):
    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        variant = config.memory_attention
        self.use_self = variant in ("self", "self-interlayer")
        self.use_interlayer = variant in ("interlayer", "self-interlayer")
        if self.use_self:
            self.self_norm = RMSNorm(config.dim, config.norm_eps)
            self.self_attn = _pre_attention(config)
        if self.use_interlayer:
            self.interlayer_norm = RMSNorm(config.dim, config.norm_eps)
            self.interlayer_attn = _pre_attention(config)
        self._add_write_modules(config)

    def prepare(self, stm: Tensor, stm_mean: Tensor) -> tuple[Tensor, Tensor]:
        """The base is the old STM; the queries add the self / interlayer attention to it."""
        queries = stm
        if self.use_self:
            h = self.self_norm(stm)
            queries = queries + self.self_attn(h, *self.self_attn.project_kv(h))
        if self.use_interlayer:
            h = self.interlayer_norm(stm)
            context = self.interlayer_norm(stm_mean)
            queries = queries + self.interlayer_attn(h, *self.interlayer_attn.project_kv(context))
        return stm, queries


class SequentialMemoryAttentionLayer(_WriteStep):
    """The staged form (module docstring): each step a gated residual; the write reads ``P_l``."""

    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        variant = config.memory_attention
        self.use_pre = variant in ("interlayer", "self-interlayer")
        if self.use_pre:
            self.pre_norm = RMSNorm(config.dim, config.norm_eps)
            if variant == "self-interlayer":
                self.mix_gate = ResidualGate(config)
            self.pre_attn = _pre_attention(config)
            self.pre_gate = ResidualGate(config)
        self._add_write_modules(config)

    def prepare(self, stm: Tensor, stm_mean: Tensor) -> tuple[Tensor, Tensor]:
        """Base and queries are both ``P_l``; ``stm_mean`` arrives normed (``M``)."""
        base = stm
        if self.use_pre:
            normed = self.pre_norm(stm)  # N_l
            context = self.mix_gate(normed, stm_mean)[0] if hasattr(self, "mix_gate") else stm_mean  # C_l
            base, _ = self.pre_gate(stm, self.pre_attn(normed, *self.pre_attn.project_kv(context)))  # P_l
        return base, base


def set_gate_bias(memory_attention: nn.Module, value: float) -> None:
    """Every residual gate of ``memory_attention`` starts from pre-activation bias ``value``."""
    for module in memory_attention.modules():
        if isinstance(module, ResidualGate):
            module.set_bias(value)


class MemoryAttention(nn.Module):
    """``new_stm = memory_attention(stm, encoded, encoded_mask)``; layer ``l`` reads encoder layer ``l``."""

    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        sequential = config.memory_attention_stages == "sequential"
        layer = SequentialMemoryAttentionLayer if sequential else MemoryAttentionLayer
        self.layers = nn.ModuleList(layer(config) for _ in range(config.num_layers))
        # The sequential form norms the layer mean once for all layers (M in the module docstring).
        self.mean_norm = (RMSNorm(config.dim, config.norm_eps)
                          if sequential and config.memory_attention != "simple" else None)
        self.slot_identity = (nn.Parameter(torch.randn(config.stm_slots, config.dim) * config.slot_identity_std)
                              if config.slot_identity else None)

    def forward(
        self,
        stm: Tensor,
        encoded: Tensor,
        encoded_mask: Tensor | None = None,
        return_gates: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor | None]]:
        """``stm: [B, L, S, D]``, ``encoded: [B, L, T, D]``, ``encoded_mask: [B, T]`` (True = real).

        Returns the new STM ``[B, L, S, D]`` (and the per-layer gates with ``return_gates``).
        """
        if stm.shape[1] != len(self.layers) or encoded.shape[1] != len(self.layers):
            raise ValueError(f"stm {tuple(stm.shape)} and encoded {tuple(encoded.shape)} must both "
                             f"have {len(self.layers)} layers in dim 1")
        stm_mean = stm.mean(dim=1)  # [B, S, D], what the interlayer attention reads
        if self.mean_norm is not None:
            stm_mean = self.mean_norm(stm_mean)
        batch, _, length, _ = encoded.shape
        rotary = self.layers[0].attn.angles(batch, length, encoded.device)  # keys at 0..T-1
        if self.slot_identity is not None and stm.shape[2] != self.slot_identity.shape[0]:
            raise ValueError(f"STM has {stm.shape[2]} slots, memory attention was built for "
                             f"{self.slot_identity.shape[0]}")
        new_layers, gates = [], []
        for i, layer in enumerate(self.layers):
            new, gate = layer(stm[:, i], stm_mean, encoded[:, i], encoded_mask, rotary, self.slot_identity)
            new_layers.append(new)
            gates.append(gate)
        new_stm = torch.stack(new_layers, dim=1)  # [B, L, S, D]
        return (new_stm, gates) if return_gates else new_stm


class ShortTermMemory(nn.Module):
    """Holds the STM state ``[B, L, S, D]`` of the conversations being served, and how to initialise it."""

    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        self.config = config
        shape = (config.num_layers, config.stm_slots, config.dim)
        if config.stm_init == "learned":
            self.init_state = nn.Parameter(torch.randn(shape) * config.stm_init_std)
        self.register_buffer("state", torch.zeros(1, *shape), persistent=False)

    def initial(self, batch_size: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """A fresh STM ``[B, L, S, D]`` (normal with small std, zeros, or the learned init)."""
        shape = (batch_size, self.config.num_layers, self.config.stm_slots, self.config.dim)
        device, dtype = self.state.device, self.state.dtype
        if self.config.stm_init == "learned":
            return self.init_state.expand(shape)
        if self.config.stm_init == "zeros":
            return torch.zeros(shape, device=device, dtype=dtype)
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return noise * self.config.stm_init_std

    def reset(self, batch_size: int = 1, generator: torch.Generator | None = None) -> None:
        self.state = self.initial(batch_size, generator).detach().clone()

    def load(self, stm: Tensor) -> None:
        expected = (self.config.num_layers, self.config.stm_slots, self.config.dim)
        if stm.dim() == 3:
            stm = stm[None]
        if tuple(stm.shape[1:]) != expected:
            raise ValueError(f"STM has shape {tuple(stm.shape)}, expected [B, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}]")
        self.state = stm.detach().to(self.state.device, self.state.dtype).clone()

    def export(self) -> Tensor:
        return self.state.detach().clone()
