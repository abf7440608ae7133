"""The one place where the MRL loss is assembled (IMPO: PPO + memory terms)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rxmrl.training.mrl.config import ObjectiveConfig


@dataclass
class LossInputs:
    """One minibatch of M (episode, step) samples with T answer-token columns.

    Token tensors are ``[M, T]`` and only entries where ``mask`` is True count; per-sample tensors ``[M]``.
    """

    log_probs: Tensor  # log pi_theta(a_t)   current policy, processed sampling distribution (differentiable)
    old_log_probs: Tensor  # log pi_old(a_t)  the policy that acted (recorded in the rollout)
    ref_log_probs: Tensor  # log pi_ref(a_t)  frozen warm-start policy, its own STM
    entropy: Tensor  # H(pi_theta(. | context_t)) per token, processed distribution (differentiable)
    mask: Tensor  # bool, real answer tokens
    advantages: Tensor  # [M] (normalised) advantage per step, shared by the step's tokens
    values: Tensor  # [M] critic's current estimate (differentiable)
    old_values: Tensor  # [M] critic's estimate at collection time
    returns: Tensor  # [M] regression target
    stm: Tensor  # [M, L, S, D] STM_t after the write, recomputed with the current memory system (differentiable)
    stm_prev: Tensor  # [M, L, S, D] STM_{t-1} before the write (recorded)
    steps: Tensor  # [M] step index t in the episode
    moe_aux: Tensor | None = None  # scalar MoE load-balancing loss of the forward pass
    token_weights: Tensor | None = None  # [M, T] weights of the policy term (memory_credit); None: all 1


LOG_PROB_FLOOR = -50.0
"""Under top-k/top-p the current (or reference) policy may filter out a token the behaviour policy sampled:
its log-prob is -inf. Flooring keeps the ratio ~0 (clipped for A > 0) and the KL terms finite instead of NaN."""


KL_LOG_RATIO_CAP = 10.0
"""``x`` of the k3 estimator is capped at ``±KL_LOG_RATIO_CAP``. A token the current policy nearly filters out
(``log pi_theta`` near the floor) while the reference likes it gives ``x ≈ 48`` and ``exp(x) ≈ 1e21``: one
token then owns the minibatch's gradient norm, and clipping scales every other token's update to nothing."""


def memory_credit(ref_log_probs: Tensor, ref_blank_log_probs: Tensor, strength: float) -> Tensor:
    """``[M, T]`` token weights ``1 + strength · clamp(log pi_ref(y_j | STM_t) - log pi_ref(y_j | STM_blank), 0, 10)``.

    The tokens the frozen warm start finds likelier *because of its memory* (a fact told earlier in the
    conversation) weigh more, so the update is decided by what memory carries rather than by the ~90% of an
    answer that the query alone predicts: DMPO's pair margin, and the policy term of :func:`mrl_loss`. Both
    log-probs are floored at ``LOG_PROB_FLOOR`` and the difference capped at ``KL_LOG_RATIO_CAP`` nats: under
    top-k the blank memory may filter a token out (``-inf``), and one such token must not own the update."""
    gain = ref_log_probs.clamp_min(LOG_PROB_FLOOR) - ref_blank_log_probs.clamp_min(LOG_PROB_FLOOR)
    return 1.0 + strength * gain.clamp(0.0, KL_LOG_RATIO_CAP)


def _k3(log_ratio: Tensor) -> Tensor:
    """``KL(p || q) ≈ exp(x) - x - 1`` with ``x = log q(a) - log p(a)``, ``a ~ p``: unbiased, always >= 0
    (``x`` capped at ``±KL_LOG_RATIO_CAP``)."""
    log_ratio = log_ratio.clamp(-KL_LOG_RATIO_CAP, KL_LOG_RATIO_CAP)
    return torch.expm1(log_ratio) - log_ratio


def memory_regulariser(stm: Tensor, stm_prev: Tensor, steps: Tensor, coef: float) -> tuple[Tensor, Tensor]:
    """IMPO's memory term ``mean_m sqrt(t_m + 1) · c_mem · MSE(STM_t, STM_{t-1})`` and the per-sample MSE
    ``[M]`` (later steps of an episode may change memory less); shared by :func:`mrl_loss` and DMPO."""
    mse = (stm - stm_prev.to(stm)).pow(2).flatten(1).mean(1)  # [M]
    return (torch.sqrt(steps.float() + 1) * coef * mse).mean(), mse


def _weighted_mean(x: Tensor, mask: Tensor, token_weights: Tensor | None, token_mean) -> Tensor:
    """The policy term's token mean; with ``memory_credit``'s weights ``w``, ``sum w·x / sum w``: the weights
    move credit between tokens, not the step size."""
    if token_weights is None:
        return token_mean(x)
    weights = token_weights.detach().float() * mask
    return (x * weights).sum() / weights.sum().clamp_min(1e-8)


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float) -> tuple[Tensor, Tensor]:
    """``½ mean max((V - R)², (V_old + clip(V - V_old, ±c_V) - R)²)`` and the share of values clipped."""
    values, old_values, returns = values.float(), old_values.float(), returns.float()
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss = 0.5 * torch.maximum((values - returns).pow(2), (clipped - returns).pow(2)).mean()
    with torch.no_grad():
        fraction = ((values - old_values).abs() > clip).float().mean()
    return loss, fraction


def mrl_loss(batch: LossInputs, cfg: ObjectiveConfig) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Total IMPO loss of a minibatch, and every term (detached) by name.

    With token mean :math:`\langle x \rangle = \sum_{m,j} \mathrm{mask}_{mj} x_{mj} / \sum \mathrm{mask}`
    over real answer tokens only (never the padded length), log-probs floored at ``LOG_PROB_FLOOR``, ratio
    :math:`\rho = \exp(\log\pi_\theta - \log\pi_{old})` and the step's advantage :math:`A_m` on each of its
    tokens::

        policy      L_clip = -< min(rho·A, clip(rho, 1-eps, 1+eps)·A) >                 token-level PPO
                    (with memory_credit > 0: the mean weighted by :func:`memory_credit`'s w, sum w·x / sum w)
        entropy     H      =  < H(pi_theta) >                                            bonus, -c_H·H
        ref KL      KL_ref =  < exp(x) - x - 1 >,  x = log pi_ref - log pi_theta         k3 of KL(pi_theta||pi_ref)
                                                            (x capped at ±10 in both KL terms)
        stab. KL    KL_old =  < rho - 1 - log rho >                                      k3 of KL(pi_old||pi_theta)
        memory      L_mem  =  mean_m sqrt(t_m + 1) · c_mem · MSE(STM_t, STM_{t-1})       IMPO memory regularisation
        value       L_V    =  ½ mean_m max((V - R)², (V_old + clip(V - V_old, ±c_V) - R)²)

        total = L_clip - c_H·H + c_ref·KL_ref + c_stab·KL_old + L_mem + c_v·L_V + c_aux·aux

    IMPO's policy stabilisation is the KL between the current policy and the previous step's policy on the
    same episode; every step of a batched rollout was produced by the same behaviour policy pi_old, so
    that is the KL to pi_old, estimated on the episode's own answer tokens. ``c_mem`` multiplies
    ``sqrt(t+1)``: later steps of an episode may change memory less. ``loss/stabilisation_kl`` is CleanRL's
    ``approx_kl`` (the same k3 estimate), logged under that one name. Diagnostics (not in the loss):
    ``clip_fraction`` (tokens with ``|rho - 1| > eps``), ``ratio`` (mean rho), ``value/clip_fraction``,
    ``memory/stm_mse`` (unweighted STM change).
    """
    mask = batch.mask.float()
    tokens = mask.sum().clamp_min(1.0)

    def token_mean(x: Tensor) -> Tensor:
        return (x * mask).sum() / tokens

    log_probs = batch.log_probs.clamp_min(LOG_PROB_FLOOR)
    ref_log_probs = batch.ref_log_probs.clamp_min(LOG_PROB_FLOOR)
    log_ratio = (log_probs - batch.old_log_probs).masked_fill(~batch.mask, 0.0)
    ratio = log_ratio.exp()
    adv = batch.advantages[:, None].to(ratio.dtype)  # [M, 1] -> broadcast over the step's tokens
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
    policy_loss = -_weighted_mean(surrogate, mask, batch.token_weights, token_mean)
    entropy = token_mean(batch.entropy)
    ref_kl = token_mean(_k3((ref_log_probs - log_probs).masked_fill(~batch.mask, 0.0)))
    stab_kl = token_mean(_k3(log_ratio))  # tokens were sampled from pi_old: k3 of KL(pi_old || pi_theta)
    memory_loss, mse = memory_regulariser(batch.stm, batch.stm_prev, batch.steps, cfg.memory_coef)
    value_loss, value_clipped = clipped_value_loss(batch.values, batch.old_values, batch.returns, cfg.value_clip)
    aux = batch.moe_aux if batch.moe_aux is not None else value_loss.new_zeros(())

    total = (policy_loss - cfg.entropy_coef * entropy + cfg.reference_kl_coef * ref_kl
             + cfg.stabilisation_kl_coef * stab_kl + memory_loss + cfg.value_coef * value_loss
             + cfg.moe_aux_coef * aux)
    with torch.no_grad():
        metrics = {"loss/policy": policy_loss, "loss/entropy": entropy, "loss/reference_kl": ref_kl,
                   "loss/stabilisation_kl": stab_kl, "loss/memory": memory_loss, "loss/value": value_loss,
                   "loss/moe_aux": aux, "loss/total": total,
                   "policy/clip_fraction": token_mean(((ratio - 1).abs() > cfg.clip).float()),
                   "policy/ratio": token_mean(ratio), "value/clip_fraction": value_clipped,
                   "memory/stm_mse": mse.mean()}
    return total, {k: v.detach() for k, v in metrics.items()}
