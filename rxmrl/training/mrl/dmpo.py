r"""DMPO, Direct Memory and Preference Optimization: DPO at every step of an episode, conditioned on the STM.

At step ``t`` of episode ``b`` the rollout (``RolloutPlan.dmpo``: the reference member, ``continue_with="best"``)
gives K candidate answers from one STM -- answers sampled from the policy and, by default, the reference
answer -- each scored by the env's reward. The highest-reward candidate is *accepted* ``y_w``, the lowest
*rejected* ``y_l``; the pair trains only when ``r(y_w) - r(y_l) >= min_margin``. The episode's memory then
takes the accepted answer, so the STM of later steps holds what the preference favours. With
:math:`\ell(y) = \frac{1}{|y|}\sum_j \log\pi(y_j \mid y_{<j}, q_t, \mathrm{STM}_t)` (log-probs of the model's
own distribution, averaged over the answer's tokens as the reference design does, so that length alone
never decides a pair)::

    z_p      = beta · [ (l_theta(y_w) - l_ref(y_w)) - (l_theta(y_l) - l_ref(y_l)) ]
               (with memory_credit > 0, l is a weighted mean: token j weighs
                1 + memory_credit · max(0, log pi_ref(y_j | STM_t) - log pi_ref(y_j | blank STM)))
    L_DPO    = - sum_p keep_p · log sigmoid(z_p) / max(1, sum_p keep_p)
    L_anchor = anchor_coef · mean_p keep_p · | l_theta(y_n) - l_ref(y_n) |        y_n: the middle candidate
    L_mem    = mean_p sqrt(t_p + 1) · c_mem · MSE(STM_t, STM_{t-1})                IMPO's memory term
    total    = L_DPO + L_anchor + L_mem + c_aux · aux

``STM_t = MemAttn(STM_{t-1}, Encoder(interaction t))`` is recomputed with the current weights, so the
gradient of ``l_theta`` reaches memory attention and the encoder (when trainable) through the write the
answer reads; the reference policy ``pi_ref`` (the frozen warm start, with its own STM written from the
same accepted interactions) only supplies ``l_ref``. No reward model is trained and no advantage is
estimated: the reward only orders the candidates.

Pairs are rebuilt every iteration (``dmpo.pairs``): ``online`` samples the candidates from the policy being
trained, ``offline`` from the frozen warm start -- the pairs of a fixed distribution, as a preference dataset
built once from the warm start would hold, without storing one. Online is the default because its rejected
answers are the policy's current mistakes; offline ones describe a policy that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rxmrl.training.mrl.objective import memory_regulariser
from rxmrl.training.mrl.rollout import member_order


@dataclass
class Pairs:
    """One preference pair per (episode, step) of a rollout, step-major (pair ``p = t·B + b``): rows of the
    rollout's samples."""

    accepted: Tensor  # [P] row of y_w
    rejected: Tensor  # [P] row of y_l
    neutral: Tensor | None  # [P] row of the middle candidate (None with two candidates)
    keep: Tensor  # [P] bool: the margin reaches min_margin
    margin: Tensor  # [P] r(y_w) - r(y_l)


def preference_pairs(rewards: Tensor, members: int, min_margin: float) -> Pairs:
    """Pairs of the rollout's ``[P·K]`` rewards in groups of ``K = members`` rows (see the module docstring).

    The accepted member is the one the rollout continued with (:func:`member_order`'s last); a pair whose
    candidates tie (margin 0) never trains, whatever ``min_margin``.
    """
    order = member_order(rewards, members)  # [P, K]
    r = rewards.float().view(-1, members)
    base = torch.arange(order.shape[0], device=order.device) * members
    accepted, rejected = order[:, -1], order[:, 0]
    margin = r.gather(1, accepted[:, None]).squeeze(1) - r.gather(1, rejected[:, None]).squeeze(1)
    neutral = base + order[:, (members - 1) // 2] if members >= 3 else None
    return Pairs(base + accepted, base + rejected, neutral, (margin >= min_margin) & (margin > 0), margin)


def sequence_log_probs(token_log_probs: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """``[M]`` mean log-prob over each answer's real tokens (``mask``), weighted by ``weights`` ``[M, T]``."""
    weights = mask.to(token_log_probs.dtype) * (1.0 if weights is None else weights.to(token_log_probs.dtype))
    return (token_log_probs * weights).sum(1) / weights.sum(1).clamp_min(1e-8)


@dataclass
class DmpoInputs:
    """One minibatch of P pairs: length-normalised sequence log-probs ``[P]`` and the accepted answers'
    memory write."""

    policy_accepted: Tensor  # l_theta(y_w), differentiable
    policy_rejected: Tensor  # l_theta(y_l), differentiable
    ref_accepted: Tensor  # l_ref(y_w)
    ref_rejected: Tensor  # l_ref(y_l)
    keep: Tensor  # [P] bool
    stm: Tensor  # [P, L, S, D] STM_t recomputed with the current weights (differentiable)
    stm_prev: Tensor  # [P, L, S, D] STM_{t-1} as recorded
    steps: Tensor  # [P] step index t
    policy_neutral: Tensor | None = None  # l_theta(y_n), with anchor_coef > 0
    ref_neutral: Tensor | None = None
    moe_aux: Tensor | None = None


def dmpo_loss(batch: DmpoInputs, beta: float, anchor_coef: float, memory_coef: float,
              moe_aux_coef: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """The DMPO loss of the module docstring, and every term (detached) by name."""
    keep = batch.keep.to(batch.policy_accepted.dtype)
    kept = keep.sum().clamp_min(1.0)
    accepted_ratio = batch.policy_accepted - batch.ref_accepted
    rejected_ratio = batch.policy_rejected - batch.ref_rejected
    z = beta * (accepted_ratio - rejected_ratio)
    dpo = -(F.logsigmoid(z) * keep).sum() / kept
    anchor = z.new_zeros(())
    if anchor_coef > 0 and batch.policy_neutral is not None and batch.ref_neutral is not None:
        anchor = ((batch.policy_neutral - batch.ref_neutral).abs() * keep).sum() / kept
    memory, mse = memory_regulariser(batch.stm, batch.stm_prev, batch.steps, memory_coef)
    aux = batch.moe_aux if batch.moe_aux is not None else z.new_zeros(())
    total = dpo + anchor_coef * anchor + memory + moe_aux_coef * aux
    with torch.no_grad():
        mean = lambda x: (x * keep).sum() / kept  # noqa: E731  over the pairs that train
        metrics = {"loss/dpo": dpo, "loss/anchor": anchor, "loss/memory": memory, "loss/moe_aux": aux,
                   "loss/total": total, "dmpo/accuracy": mean((z > 0).float()),
                   "dmpo/margin": mean(z / beta), "dmpo/accepted_log_ratio": mean(accepted_ratio),
                   "dmpo/rejected_log_ratio": mean(rejected_ratio), "dmpo/pairs_kept": keep.mean(),
                   "memory/stm_mse": mse.mean()}
    return total, {k: v.detach() for k, v in metrics.items()}
