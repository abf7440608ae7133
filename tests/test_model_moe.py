"""Specifications of the Mixture-of-Experts feed-forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rxmrl.model.layers import MoE, load_balancing_loss


def test_moe_matches_a_per_token_reference():
    torch.manual_seed(0)
    moe = MoE(dim=16, hidden=24, num_experts=5, experts_per_token=2)
    for weight in (moe.w_gate, moe.w_up, moe.w_down):
        torch.nn.init.normal_(weight, std=0.2)
    x = torch.randn(3, 7, 16)
    out, _ = moe(x)
    expected = torch.zeros_like(x)
    for b in range(3):
        for t in range(7):
            probs = moe.router(x[b, t]).softmax(-1)
            top_p, top_i = probs.topk(2)
            for p, e in zip(top_p / top_p.sum(), top_i, strict=True):
                h = F.silu(x[b, t] @ moe.w_gate[e]) * (x[b, t] @ moe.w_up[e])
                expected[b, t] += p * (h @ moe.w_down[e])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_balanced_routing_has_lower_aux_loss_than_collapsed_routing():
    tokens, experts = 64, 4
    balanced_probs = torch.full((tokens, experts), 1 / experts)
    balanced_ids = torch.arange(tokens)[:, None] % experts
    collapsed_probs = torch.tensor([0.97, 0.01, 0.01, 0.01]).expand(tokens, -1)
    collapsed_ids = torch.zeros(tokens, 1, dtype=torch.long)
    balanced = load_balancing_loss(balanced_probs, balanced_ids, experts)
    collapsed = load_balancing_loss(collapsed_probs, collapsed_ids, experts)
    assert balanced.item() == 1.0
    assert collapsed.item() > 3.5


def test_aux_loss_gradient_pushes_the_router_towards_balance():
    torch.manual_seed(0)
    moe = MoE(dim=8, hidden=8, num_experts=4, experts_per_token=1)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0  # everything goes to expert 0 for positive inputs
    x = torch.rand(32, 8)
    optimizer = torch.optim.SGD(moe.router.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        _, aux = moe(x)
        first = aux.item() if first is None else first
        optimizer.zero_grad()
        aux.backward()
        optimizer.step()
    assert moe(x)[1].item() < first
