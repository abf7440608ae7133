"""Feed-forward building blocks: RMSNorm, SwiGLU and a top-k Mixture-of-Experts of SwiGLU experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * g``: LayerNorm without centring (cheaper, as good in practice)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()  # no copy when x is already float32
        normed = x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    """``FFN(x) = W_down (SiLU(W_gate x) * W_up x)`` (each projection with an optional bias)."""

    def __init__(self, dim: int, hidden: int, bias: bool = False) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=bias)
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


def load_balancing_loss(router_probs: Tensor, expert_ids: Tensor, num_experts: int) -> Tensor:
    """Switch-Transformer auxiliary loss ``E * sum_e f_e * P_e``.

    ``f_e`` is the fraction of routed (token, slot) assignments sent to expert ``e`` and ``P_e`` the mean
    router probability of ``e``. It is 1 for perfectly uniform routing and up to ``E`` when one expert
    takes everything, so minimising it spreads tokens across experts. ``router_probs: [N, E]``,
    ``expert_ids: [N, k]``.
    """
    counts = torch.bincount(expert_ids.flatten(), minlength=num_experts).to(router_probs.dtype)
    fraction = counts / expert_ids.numel()  # f_e (no gradient: it comes from a top-k)
    mean_prob = router_probs.mean(0)  # P_e
    return num_experts * (fraction * mean_prob).sum()


class MoE(nn.Module):
    """Top-k routed SwiGLU experts with weights stacked as ``[E, ...]`` tensors.

    ``y(x) = sum_{e in topk(p(x))} p_e(x)/Z * SwiGLU_e(x) [+ b] [+ SwiGLU_shared(x)]``,
    ``p = softmax(W_r x)``, ``Z`` renormalising the k chosen probabilities. The output bias ``b`` and the
    always-active shared expert are off by default (converted checkpoints use them). Tokens are grouped
    per expert (sort by expert id, then ``index_select`` / ``index_add_``), so the Python loop runs over
    experts, never over tokens.
    """

    def __init__(self, dim: int, hidden: int, num_experts: int, experts_per_token: int,
                 output_bias: bool = False, shared_dim: int | None = None, shared_bias: bool = False,
                 expert_bias: bool = False) -> None:
        super().__init__()
        self.num_experts, self.top_k = num_experts, experts_per_token
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.w_gate = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.w_up = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.w_down = nn.Parameter(torch.empty(num_experts, hidden, dim))
        if expert_bias:  # each expert's projections with biases (older reference checkpoints)
            self.b_gate = nn.Parameter(torch.zeros(num_experts, hidden))
            self.b_up = nn.Parameter(torch.zeros(num_experts, hidden))
            self.b_down = nn.Parameter(torch.zeros(num_experts, dim))
        self.expert_bias = expert_bias
        self.output_bias = nn.Parameter(torch.zeros(dim)) if output_bias else None
        self.shared = SwiGLU(dim, shared_dim, bias=shared_bias) if shared_dim else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [..., D]`` -> (output of the same shape, load-balancing aux loss scalar)."""
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # [N, D]
        router_probs = self.router(tokens).float().softmax(-1)  # [N, E]
        top_probs, top_ids = router_probs.topk(self.top_k, dim=-1)  # [N, k]
        top_weights = (top_probs / top_probs.sum(-1, keepdim=True)).to(x.dtype)

        flat_expert = top_ids.flatten()  # [N*k]
        order = flat_expert.argsort(stable=True)
        token_index = torch.arange(tokens.shape[0], device=x.device).repeat_interleave(self.top_k)
        token_index, weights = token_index[order], top_weights.flatten()[order]  # grouped by expert
        counts = torch.bincount(flat_expert, minlength=self.num_experts).tolist()

        out = torch.zeros_like(tokens)
        start = 0
        for expert, count in enumerate(counts):
            if count == 0:
                continue
            rows = token_index[start : start + count]
            h = tokens.index_select(0, rows)  # [n_e, D]
            if self.expert_bias:
                h = F.silu(h @ self.w_gate[expert] + self.b_gate[expert]) * (h @ self.w_up[expert] + self.b_up[expert])
                h = h @ self.w_down[expert] + self.b_down[expert]
            else:
                h = (F.silu(h @ self.w_gate[expert]) * (h @ self.w_up[expert])) @ self.w_down[expert]
            out.index_add_(0, rows, h * weights[start : start + count, None])
            start += count
        if self.output_bias is not None:
            out = out + self.output_bias
        if self.shared is not None:
            out = out + self.shared(tokens)
        aux = load_balancing_loss(router_probs, top_ids, self.num_experts)
        return out.view(shape), aux
