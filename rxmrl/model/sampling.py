"""Turning logits into tokens, and scoring tokens under the same distribution.

PPO's ratio ``pi_new(a)/pi_old(a)`` is only meaningful when both log-probs come from the distribution the
token was actually drawn from. :func:`processed_log_probs` is that distribution (temperature, then top-k,
then top-p); generation samples from it and records ``log p(token)`` under it, and a trainer recomputes
new log-probs with the same function and the same :class:`SamplingConfig`.
Greedy decoding takes the argmax and scores tokens under the plain softmax (temperature 1, no filters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


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


def sample(
    logits: Tensor, config: SamplingConfig, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Next tokens ``[B]`` from ``logits [B, V]`` and their log-probs under the sampling distribution."""
    log_probs = processed_log_probs(logits, config)
    if config.greedy:
        tokens = logits.argmax(-1)
    else:
        tokens = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
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
    tokens = tokens.long()
    vocab = logits.shape[-1]
    if config.greedy or config.top_k is None or config.top_k >= vocab:
        log_probs = processed_log_probs(logits, config)
        return log_probs.gather(-1, tokens[:, None]).squeeze(-1), safe_entropy(log_probs)
    # Top k+1 of the raw logits (dividing by temperature > 0 keeps the order; only [N, k+1] values are
    # scaled). The (k+1)-th scaled value equal to the k-th is a tie the full path would keep.
    top, index = logits.float().topk(config.top_k + 1, dim=-1)  # [N, k+1], descending
    top = top / config.temperature
    with torch.no_grad():
        ties = bool((top[:, -1] >= top[:, -2]).any())
    if ties:
        log_probs = processed_log_probs(logits, config)
        return log_probs.gather(-1, tokens[:, None]).squeeze(-1), safe_entropy(log_probs)
    top, index = top[:, :-1], index[:, :-1]  # [N, k]
    if config.top_p is not None and config.top_p < 1:
        probs = top.softmax(-1)
        top = top.masked_fill((probs.cumsum(-1) - probs) >= config.top_p, float("-inf"))
    top_log_probs = top.log_softmax(-1)  # [N, k]
    hit = index == tokens[:, None]  # [N, k]: at most one True per row
    chosen = top_log_probs.masked_fill(~hit, 0.0).sum(-1)
    log_p = torch.where(hit.any(-1), chosen, torch.full_like(chosen, float("-inf")))
    return log_p, safe_entropy(top_log_probs)


def entropy(logits: Tensor, config: SamplingConfig) -> Tensor:
    """``H = -sum_v p_v log p_v`` of the sampling distribution, ``[...]``; filtered tokens add 0."""
    log_probs = processed_log_probs(logits, config)
    plogp = log_probs.exp() * log_probs
    return -torch.where(torch.isfinite(log_probs), plogp, 0.0).sum(-1)
