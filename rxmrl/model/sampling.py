"""Turning logits into tokens, and scoring tokens under the same distribution.

PPO's ratio ``pi_new(a)/pi_old(a)`` is only meaningful when both log-probs come from the distribution the
token was actually drawn from. :func:`processed_log_probs` is that distribution (temperature, then top-k,
then top-p); generation samples from it and records ``log p(token)`` under it, and a trainer recomputes
new log-probs with the same function and the same :class:`SamplingConfig`.
Greedy decoding takes the argmax and scores tokens under the plain softmax (temperature 1, no filters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # > 0; ignored when greedy
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches top_p
    greedy: bool = False  # argmax decoding

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0 (use greedy=True for argmax)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")


GREEDY = SamplingConfig(greedy=True)


def describe_sampling(config: SamplingConfig) -> str:
    """How answers were drawn, for a report: ``greedy``, or ``sampled (temperature 1.0, top-k 50)``."""
    if config.greedy:
        return "greedy"
    filters = [f"temperature {config.temperature:g}"]
    filters += [f"top-k {config.top_k}"] if config.top_k is not None else []
    filters += [f"top-p {config.top_p:g}"] if config.top_p is not None else []
    return f"sampled ({', '.join(filters)})"


def processed_log_probs(logits: Tensor, config: SamplingConfig) -> Tensor:
    """Log-probs ``[..., V]`` of the distribution tokens are sampled from (filtered tokens: -inf)."""
    logits = logits.float()
    if config.greedy:
        return logits.log_softmax(-1)
    logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = logits.topk(config.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p (the first one always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= config.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.log_softmax(-1)


def token_log_probs(logits: Tensor, tokens: Tensor, config: SamplingConfig) -> Tensor:
    """``log p(tokens)`` under :func:`processed_log_probs`; ``logits [..., V]``, ``tokens [...]``."""
    log_probs = processed_log_probs(logits, config)
    return log_probs.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


class NonFiniteProbabilitiesError(RuntimeError):
    """The logits held NaN/inf, so there is no distribution to sample from: the weights diverged."""


def draw(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""One token per row of ``probs [B, V]`` (unnormalised, >= 0), by inverse transform sampling:

        token = min{v : F_v > u · F_V},   F_v = sum_{j <= v} p_j  (float64),   u ~ U[0, 1) from ``generator``

    Token ``v`` owns the interval ``[F_{v-1}, F_v)`` of length ``p_v``, so this is an exact draw from the
    categorical and a filtered (zero-probability) token can never be drawn. It costs a cumulative sum and a
    binary search per row; ``torch.multinomial`` draws V exponentials a row on the CPU, the largest part of a
    generation step at V = 5000 (``experiments/bench_mrl.py``). Raises :class:`NonFiniteProbabilitiesError`
    on NaN/inf probabilities (they propagate into the row's total).
    """
    cdf = probs.double().cumsum(-1)  # [B, V]
    total = cdf[:, -1:]  # [B, 1]
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        raise NonFiniteProbabilitiesError("the sampling probabilities contain NaN/inf or sum to 0 "
                                          "(the policy's logits are not finite)")
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64, device=probs.device) * total
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sample(
    logits: Tensor, config: SamplingConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Next tokens ``[B]`` from ``logits [B, V]`` and their log-probs under the sampling distribution."""
    log_probs = processed_log_probs(logits, config)
    if config.greedy:
        tokens = logits.argmax(-1)
    else:
        tokens = draw(log_probs.exp(), generator)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1)


def safe_entropy(log_probs: Tensor) -> Tensor:
    """``H = -sum_v p_v log p_v`` of log-probs ``[..., V]`` whose filtered tokens are -inf.

    Differentiable there too (the plain ``exp(x)·x`` has a NaN gradient at -inf: ``0 · -inf``).
    """
    finite = torch.isfinite(log_probs)
    safe = log_probs.masked_fill(~finite, 0.0)
    return -(safe.exp().masked_fill(~finite, 0.0) * safe).sum(-1)


def token_scores(logits: Tensor, tokens: Tensor, config: SamplingConfig) -> tuple[Tensor, Tensor]:
    """``(log p(tokens), H(p))`` under :func:`processed_log_probs`; ``logits [N, V]``, ``tokens [N]`` -> ``[N]``.

    Differentiable. With ``top_k`` only the k largest logits carry probability, so both are computed on
    those ``[N, k]`` values (top-p then applied to them in the same sorted order) instead of on ``[N, V]``:
    a token outside the top k gets ``-inf`` exactly as the full path gives it. When a row has ties at the
    k-th logit (the full path keeps every tied token) the full ``[N, V]`` path is used, so results always
    equal ``token_log_probs`` and the entropy of ``processed_log_probs`` up to float rounding.
    """
    if _full_vocabulary(config, logits.shape[-1]):
        return _full_scores(logits, tokens, config)
    top, index = logits.float().topk(config.top_k + 1, dim=-1)  # [N, k+1], descending
    return _top_k_scores(top, index, tokens, config, lambda: logits)


def head_token_scores(hidden: Tensor, head: nn.Linear, tokens: Tensor, config: SamplingConfig
                      ) -> tuple[Tensor, Tensor]:
    """:func:`token_scores` of the logits ``head(hidden)`` (``hidden [N, D]``), without ``[N, V]`` logits in
    the autograd graph when ``top_k`` filters: :class:`TopLogits` keeps the k + 1 largest and sends their
    gradient straight to ``hidden`` and the head. What a PPO update needs; same values and gradients."""
    if _full_vocabulary(config, head.out_features):
        return _full_scores(head(hidden), tokens, config)
    top, index = TopLogits.apply(hidden, head.weight, head.bias, config.top_k + 1)
    return _top_k_scores(top, index, tokens, config, lambda: head(hidden))


def _full_vocabulary(config: SamplingConfig, vocab: int) -> bool:
    return config.greedy or config.top_k is None or config.top_k >= vocab


def _full_scores(logits: Tensor, tokens: Tensor, config: SamplingConfig) -> tuple[Tensor, Tensor]:
    log_probs = processed_log_probs(logits, config)
    return log_probs.gather(-1, tokens.long()[:, None]).squeeze(-1), safe_entropy(log_probs)


def _top_k_scores(top: Tensor, index: Tensor, tokens: Tensor, config: SamplingConfig,
                  full_logits: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    """The scores from the k + 1 largest raw logits ``top`` (descending) and their ids ``index``, ``[N, k+1]``.

    Dividing by temperature > 0 keeps the order, so only ``[N, k+1]`` values are scaled. A (k+1)-th scaled
    value equal to the k-th is a tie the full path would keep: then ``full_logits()`` is scored in full."""
    tokens = tokens.long()
    top = top / config.temperature
    with torch.no_grad():
        ties = bool((top[:, -1] >= top[:, -2]).any())
    if ties:
        return _full_scores(full_logits(), tokens, config)
    top, index = top[:, :-1], index[:, :-1]  # [N, k]
    if config.top_p is not None and config.top_p < 1:
        probs = top.softmax(-1)
        top = top.masked_fill((probs.cumsum(-1) - probs) >= config.top_p, float("-inf"))
    top_log_probs = top.log_softmax(-1)  # [N, k]
    hit = index == tokens[:, None]  # [N, k]: at most one True per row
    chosen = top_log_probs.masked_fill(~hit, 0.0).sum(-1)
    log_p = torch.where(hit.any(-1), chosen, torch.full_like(chosen, float("-inf")))
    return log_p, safe_entropy(top_log_probs)


class TopLogits(torch.autograd.Function):
    r"""The k largest logits of ``z = hidden · Wᵀ + b`` per row (float32, descending) and their ids.

    Forward projects ``ROWS`` rows at a time and keeps only the top k, so no ``[N, V]`` tensor outlives a
    chunk. The gradient of the kept values is a sparse ``G [N, V]`` with k entries a row, so backward is
    ``∂hidden = G·W``, ``∂W = Gᵀ·hidden``, ``∂b = colsum G``: ``O(N·k·D)`` instead of the dense ``O(N·V·D)``
    products and the ``[N, V]`` zero-filled gradient that ``topk``'s own backward builds.
    """

    ROWS = 256

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
        values, index = [], []
        for start in range(0, hidden.shape[0], TopLogits.ROWS):
            logits = F.linear(hidden[start:start + TopLogits.ROWS], weight, bias).float()
            top = logits.topk(k, dim=-1)
            values.append(top.values)
            index.append(top.indices)
        values = torch.cat(values) if values else hidden.new_empty(0, k, dtype=torch.float32)
        index = torch.cat(index) if index else torch.empty(0, k, dtype=torch.long, device=hidden.device)
        ctx.save_for_backward(hidden, weight, index)
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(index)
        return values, index

    @staticmethod
    def backward(ctx, grad_values: Tensor, _grad_index: Tensor):
        hidden, weight, index = ctx.saved_tensors
        rows, k = index.shape
        positions = torch.stack((torch.arange(rows, device=index.device).repeat_interleave(k), index.reshape(-1)))
        grad = torch.sparse_coo_tensor(positions, grad_values.reshape(-1).float(), (rows, weight.shape[0]),
                                       check_invariants=False).coalesce()  # [N, V], k entries a row
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_hidden = torch.sparse.mm(grad, weight.float()).to(hidden.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.sparse.mm(grad.t(), hidden.float()).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = torch.zeros(weight.shape[0], device=weight.device).index_add_(
                0, index.reshape(-1), grad_values.reshape(-1).float()).to(weight.dtype)
        return grad_hidden, grad_weight, grad_bias, None


def entropy(logits: Tensor, config: SamplingConfig) -> Tensor:
    """``H = -sum_v p_v log p_v`` of the sampling distribution, ``[...]``; filtered tokens add 0."""
    log_probs = processed_log_probs(logits, config)
    plogp = log_probs.exp() * log_probs
    return -torch.where(torch.isfinite(log_probs), plogp, 0.0).sum(-1)
