"""AdamW over named parameter groups.

A model's parameters are sorted into *named groups* (``embedding``, ``encoder``, ``decoder``,
``memory_attention``, ...) by a ``group_of(parameter_name) -> group`` function, so each group can have its
own learning rate and weight decay and can be frozen or unfrozen by name.

Weight decay (AdamW's decoupled ``θ ← θ − lr·λ·θ``) pulls weights toward zero. That is a sensible prior for
matrices, but not for norm gains (their neutral value is 1), biases (a shift, not a scale) or embeddings
(rare tokens would be shrunk just for being rare). So every named group is split in two torch groups: the
decaying matrices and a ``no_decay`` group with ``weight_decay = 0`` for 1-D tensors and embedding tables.

Every group always stays in the optimizer, frozen or not: a frozen parameter has ``requires_grad=False`` and
``grad=None``, and AdamW skips parameters without a gradient entirely (no moment update, no decay), so it
stays bit-identical while the optimizer's state layout never changes -- which keeps resume simple.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

GroupOf = Callable[[str], str]


@dataclass
class OptimConfig:
    LIMITS: ClassVar[dict[str, str]] = {"lr": "> 0", "weight_decay": ">= 0", "betas": "in [0, 1)", "eps": "> 0",
        "group_lr": ">= 0", "group_weight_decay": ">= 0"}
    lr: float = 3e-4  # base learning rate for groups without their own
    weight_decay: float = 0.01  # decoupled decay for matrices (never norms, biases, embeddings)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    group_lr: dict[str, float] = field(default_factory=dict)  # named group -> its learning rate
    group_weight_decay: dict[str, float] = field(default_factory=dict)  # named group -> its decay
    # AdamW's implementation: "fused" (one kernel over all tensors) or "foreach" (torch's multi-tensor
    # loop). The same update rule rounded in another order: a perturbation for `rxmrl study seeds`
    kernel: Literal["fused", "foreach"] = "fused"


def prefix_groups(prefixes: Mapping[str, Sequence[str]], default: str = "default") -> GroupOf:
    """``group_of`` from name prefixes: ``{"encoder": ["encoder."], ...}``; first match wins."""
    def group_of(name: str) -> str:
        for group, starts in prefixes.items():
            if any(name.startswith(start) for start in starts):
                return group
        return default
    return group_of


def named_groups(model: nn.Module, group_of: GroupOf | None = None) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Parameters by named group, in ``named_parameters`` order (tied weights counted once)."""
    group_of = group_of or (lambda name: "default")
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, parameter in model.named_parameters():
        groups.setdefault(group_of(name), []).append((name, parameter))
    return groups


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters exempt from weight decay: 1-D tensors (norm gains, biases) and embeddings."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {name for name, p in model.named_parameters() if p.ndim < 2 or id(p) in embedding_ids}


def build_optimizer(model: nn.Module, config: OptimConfig, group_of: GroupOf | None = None) -> torch.optim.AdamW:
    """AdamW with two torch groups per named group; each torch group records its ``group`` name."""
    exempt = no_decay_names(model)
    param_groups = []
    for group, members in named_groups(model, group_of).items():
        lr = config.group_lr.get(group, config.lr)
        decay = config.group_weight_decay.get(group, config.weight_decay)
        for suffix, wd, chosen in (("", decay, [p for n, p in members if n not in exempt]),
                                   (".no_decay", 0.0, [p for n, p in members if n in exempt])):
            if chosen:
                param_groups.append({"params": chosen, "lr": lr, "weight_decay": wd,
                                     "group": group, "name": group + suffix})
    unknown = (set(config.group_lr) | set(config.group_weight_decay)) - {g["group"] for g in param_groups}
    if unknown:
        raise ValueError(f"group_lr/group_weight_decay name unknown group(s) {sorted(unknown)}; "
                         f"the model has {sorted({g['group'] for g in param_groups})}")
    # fused: one kernel over all tensors; on the CPU the per-tensor loop took ~15x longer (a d128 MRL step:
    # 15 ms of optimizer per minibatch). The same update rule, in one pass.
    kernel = {"fused": True} if config.kernel == "fused" else {"foreach": True}
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=config.betas, eps=config.eps, **kernel)


def set_trainable(model: nn.Module, trainable: Sequence[str] | set[str] | None,
                  group_of: GroupOf | None = None) -> set[str]:
    """Freeze every named group not in ``trainable`` (None: all train); returns the trainable group names.

    Frozen parameters get ``requires_grad=False`` and their gradient dropped, so the optimizer skips them.
    """
    groups = named_groups(model, group_of)
    chosen = set(groups) if trainable is None else set(trainable)
    unknown = chosen - set(groups)
    if unknown:
        raise ValueError(f"cannot train unknown group(s) {sorted(unknown)}; the model has {sorted(groups)}")
    for group, members in groups.items():
        for _, parameter in members:
            parameter.requires_grad_(group in chosen)
            if group not in chosen:
                parameter.grad = None
    return chosen


def clip_sets(model: nn.Module, group_of: GroupOf | None, apart: Collection[str] = ()) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by clip set: each group in ``apart``, then all the rest under ``""``.

    Computed when the trainable set changes, so a step does not walk the parameter names again.
    """
    sets: dict[str, list[nn.Parameter]] = {group: [] for group in (*apart, "")}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            group = group_of(name) if group_of is not None else "default"
            sets[group if group in apart else ""].append(parameter)
    return {group: params for group, params in sets.items() if params}


def clip_gradients(sets: Mapping[str, Sequence[nn.Parameter]], max_norm: float | None) -> dict[str, float]:
    """Clip each set's gradients to L2 norm ``max_norm`` on its own (None: no clipping).

    A group clipped apart (MRL's ``critic``) keeps its own budget: under one global norm the value loss's
    large gradient (critic norm ~15 against the policy's < 1, measured) would shrink the policy's step.
    Returns the norms before clipping: ``grad_norm`` over every gradient, ``sqrt(sum_s ||g_s||^2)`` (for the
    finiteness check and the log), and ``grad_norm/<group>`` for each group clipped apart.
    """
    clip = max_norm if max_norm else float("inf")
    norms = {group: float(torch.nn.utils.clip_grad_norm_(params, clip)) for group, params in sets.items()}
    total = math.sqrt(sum(norm ** 2 for norm in norms.values()))
    return {"grad_norm": total, **{f"grad_norm/{group}": norm for group, norm in norms.items() if group}}


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``lr/<group>`` of every named group (its two torch groups share one rate)."""
    return {f"lr/{group['group']}": group["lr"] for group in optimizer.param_groups}
