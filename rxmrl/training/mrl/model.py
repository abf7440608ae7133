"""What MRL's optimiser trains: the policy and the critic as one module, with the policy's group names."""

from __future__ import annotations

from torch import nn

from rxmrl.model import ReactiveTransformer
from rxmrl.training.mrl.critic import Critic

MEMORY_SYSTEM = ("embedding", "encoder", "memory_attention", "stm")
ENCODER_INPUTS = ("embedding", "encoder")  # what the encoded data of a write depends on
CLIPPED_APART = ("critic",)  # the value loss's large gradient must not shrink the policy's step


class MrlModel(nn.Module):
    """What the optimiser trains: the policy (RxT) and the critic (None for the group estimators); the
    frozen reference lives outside."""

    def __init__(self, policy: ReactiveTransformer, critic: Critic | None) -> None:
        super().__init__()
        self.policy, self.critic = policy, critic


def component_of(model: MrlModel):
    """``group_of`` of the optimiser: the policy's ``parameter_groups()`` names, plus ``critic``."""
    by_id = {id(p): group for group, params in model.policy.parameter_groups().items() for p in params}
    names = {f"policy.{name}": by_id[id(p)] for name, p in model.policy.named_parameters()}

    def group_of(name: str) -> str:
        return "critic" if name.startswith("critic.") else names[name]
    return group_of
