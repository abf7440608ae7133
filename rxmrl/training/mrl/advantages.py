"""Per-step advantages and returns from rewards and the critic's values.

Samples are step-major (``t·B + b``, or ``(t·B + b)·G + g`` with groups), so ``rewards.view(N, -1)`` is
steps x samples.

* ``impo`` (IMPO's simplification, each step its own bandit-like decision)::

      A_t = r_t - V_t,                 R_t = r_t

* ``gae`` over the episode's steps (``done`` after the last step)::

      delta_t = r_t + gamma·V_{t+1} - V_t      (V_N = 0)
      A_t     = delta_t + gamma·lam·A_{t+1},   R_t = A_t + V_t

* ``grpo`` and ``rloo``: G answers ``r_{t,b,1..G}`` sampled for step t of episode b from the identical STM and
  query (samples ``(t·B + b)·G + g``). Their reward differences isolate what the policy did with that memory,
  which a critic's estimate cannot: the remembered fact is a word or two of a 20-word answer::

      grpo   A_{t,b,g} = (r_{t,b,g} − mean_g' r_{t,b,g'}) / (std_g' r_{t,b,g'} + eps)
      rloo   A_{t,b,g} = r_{t,b,g} − (sum_{g' != g} r_{t,b,g'}) / (G − 1)          (leave one out: unbiased)

  ``R = r`` (no critic regresses on it). Equal rewards in a group give zero advantage: nothing to learn.

Normalisation (``batch``: whiten over all samples; ``step``: over the episodes at each step index) is applied
to the advantages only; the critic regresses on the unnormalised returns.

Credit to memory writes. An answer at step t depends on every write before it, but the update recomputes
only the last one (``STM_t = MemAttn(STM_{t-1}, Encoder(interaction t))`` from the recorded ``STM_{t-1}``), so
memory attention and the encoder learn from how the write just before each answer serves that answer. That
is the truncation IMPO uses; an earlier write gets credit through the answers right after it. The group
estimators sharpen exactly this signal: within a group the write is the same, so the advantage says which
reading of it paid.
"""

from __future__ import annotations

import torch
from torch import Tensor


GROUP_ESTIMATORS: tuple[str, ...] = ("grpo", "rloo")


def group_advantages(rewards: Tensor, group_size: int, estimator: str, eps: float = 1e-8) -> Tensor:
    """``[M]`` group advantages of rewards in groups of ``group_size`` consecutive samples (see above)."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} (>= 2)")
    r = rewards.float().view(-1, group_size)  # [groups, G]
    if estimator == "grpo":
        adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)
    elif estimator == "rloo":
        adv = r - (r.sum(1, keepdim=True) - r) / (group_size - 1)
    else:
        raise ValueError(f"estimator={estimator!r}, expected one of {GROUP_ESTIMATORS}")
    return adv.reshape(-1)


def compute_advantages(rewards: Tensor, values: Tensor, num_steps: int, estimator: str = "impo",
                       gamma: float = 0.99, lam: float = 0.95, normalize: str = "batch",
                       eps: float = 1e-8, group_size: int = 1) -> tuple[Tensor, Tensor]:
    """``(advantages [M], returns [M])`` for ``M = num_steps · B · group_size`` step-major samples."""
    if estimator in GROUP_ESTIMATORS:
        adv = group_advantages(rewards, group_size, estimator, eps).view(num_steps, -1)  # [N, B·G]
        return _normalised(adv, normalize, eps).reshape(-1), rewards.float().clone()
    if group_size != 1:
        raise ValueError(f"estimator={estimator!r} takes one answer per step, got groups of {group_size}")
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
        raise ValueError(f"estimator={estimator!r}, expected 'impo', 'gae', 'grpo' or 'rloo'")
    return _normalised(adv, normalize, eps).reshape(-1), ret.reshape(-1)


def _normalised(adv: Tensor, normalize: str, eps: float) -> Tensor:
    """``[N, K]`` advantages whitened over all samples (``batch``), per step index (``step``) or not."""
    if normalize == "batch" and adv.numel() > 1:
        return (adv - adv.mean()) / (adv.std() + eps)
    if normalize == "step" and adv.shape[1] > 1:
        return (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + eps)
    if normalize not in ("batch", "step", "none"):
        raise ValueError(f"normalize={normalize!r}, expected 'batch', 'step' or 'none'")
    return adv


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """``1 - Var(target - predicted) / Var(target)``: 1 is perfect, 0 is no better than the mean."""
    var = target.float().var()
    if var == 0 or target.numel() < 2:
        return float("nan")
    return float(1 - (target.float() - predicted.float()).var() / var)
