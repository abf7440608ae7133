"""Per-step advantages and returns from rewards and the critic's values.

Samples are step-major (``t·B + b``), so ``rewards.view(N, B)`` is steps x episodes.

* ``impo`` (IMPO's simplification, each step its own bandit-like decision)::

      A_t = r_t - V_t,                 R_t = r_t

* ``gae`` over the episode's steps (``done`` after the last step)::

      delta_t = r_t + gamma·V_{t+1} - V_t      (V_N = 0)
      A_t     = delta_t + gamma·lam·A_{t+1},   R_t = A_t + V_t

Normalisation (``batch``: whiten over all samples; ``step``: over the episodes at each step index) is applied
to the advantages only; the critic regresses on the unnormalised returns.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_advantages(rewards: Tensor, values: Tensor, num_steps: int, estimator: str = "impo",
                       gamma: float = 0.99, lam: float = 0.95, normalize: str = "batch",
                       eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """``(advantages [M], returns [M])`` for ``M = num_steps · B`` step-major samples."""
    r = rewards.float().view(num_steps, -1)  # [N, B]
    v = values.float().view(num_steps, -1)
    if estimator == "impo":
        adv, ret = r - v, r.clone()
    elif estimator == "gae":
        adv = torch.zeros_like(r)
        next_adv, next_value = torch.zeros_like(r[0]), torch.zeros_like(v[0])
        for t in reversed(range(num_steps)):
            delta = r[t] + gamma * next_value - v[t]
            next_adv = delta + gamma * lam * next_adv
            adv[t], next_value = next_adv, v[t]
        ret = adv + v
    else:
        raise ValueError(f"estimator={estimator!r}, expected 'impo' or 'gae'")
    if normalize == "batch" and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + eps)
    elif normalize == "step" and adv.shape[1] > 1:
        adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + eps)
    elif normalize not in ("batch", "step", "none"):
        raise ValueError(f"normalize={normalize!r}, expected 'batch', 'step' or 'none'")
    return adv.reshape(-1), ret.reshape(-1)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """``1 - Var(target - predicted) / Var(target)``: 1 is perfect, 0 is no better than the mean."""
    var = target.float().var()
    if var == 0 or target.numel() < 2:
        return float("nan")
    return float(1 - (target.float() - predicted.float()).var() / var)
