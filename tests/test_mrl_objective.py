"""The MRL loss assembly, advantages and explained variance against hand-computed values."""

import math

import pytest
import torch

from rxmrl.training.mrl import LossInputs, ObjectiveConfig, compute_advantages, explained_variance, mrl_loss


def _tiny_batch() -> LossInputs:
    # Two samples: step 0 with 2 real tokens, step 1 with 1 real token (+1 padding column).
    return LossInputs(
        log_probs=torch.tensor([[-1.0, -2.0], [-0.5, -9.0]]),
        old_log_probs=torch.tensor([[-1.5, -1.5], [-0.5, -3.0]]),
        ref_log_probs=torch.tensor([[-1.0, -1.0], [-1.0, -7.0]]),
        entropy=torch.tensor([[2.0, 1.0], [3.0, 100.0]]),
        mask=torch.tensor([[True, True], [True, False]]),
        advantages=torch.tensor([1.0, -2.0]),
        values=torch.tensor([3.0, 30.0]),
        old_values=torch.tensor([2.0, 5.0]),
        returns=torch.tensor([4.0, 6.0]),
        stm=torch.ones(2, 1, 2, 1),
        stm_prev=torch.zeros(2, 1, 2, 1),
        steps=torch.tensor([0, 1]),
        moe_aux=torch.tensor(0.7),
    )


def test_loss_assembly_matches_hand_computed_terms():
    cfg = ObjectiveConfig(clip=0.2, entropy_coef=0.01, reference_kl_coef=0.05, stabilisation_kl_coef=0.01,
                          memory_coef=1e-4, value_coef=0.5, value_clip=20.0, moe_aux_coef=0.1)
    total, m = mrl_loss(_tiny_batch(), cfg)
    # Real tokens: (0,0) lp -1 old -1.5 A=1; (0,1) lp -2 old -1.5 A=1; (1,0) lp -0.5 old -0.5 A=-2.
    r1, r2, r3 = math.exp(0.5), math.exp(-0.5), 1.0
    s1 = min(r1 * 1, 1.2 * 1)                       # 1.2 (clipped)
    s2 = min(r2 * 1, 0.8 * 1)                       # r2 = 0.607 < 0.8
    s3 = min(r3 * -2, 1.0 * -2)                     # -2
    policy = -(s1 + s2 + s3) / 3
    entropy = (2 + 1 + 3) / 3                        # padded 100 ignored
    k3 = lambda x: math.exp(x) - x - 1               # noqa: E731
    ref_kl = (k3(-1 - -1) + k3(-1 - -2) + k3(-1 - -0.5)) / 3
    stab_kl = (k3(0.5) + k3(-0.5) + k3(0.0)) / 3
    memory = (math.sqrt(1) * 1e-4 * 1 + math.sqrt(2) * 1e-4 * 1) / 2
    # Value: sample 0 V=3 old 2 R 4 -> (1, 1) -> 1; sample 1 V=30 old 5 clip 20 -> 25; R 6 -> max(576, 361)
    value = 0.5 * (1 + 576) / 2
    expected = policy - 0.01 * entropy + 0.05 * ref_kl + 0.01 * stab_kl + memory + 0.5 * value + 0.1 * 0.7
    assert m["loss/policy"].item() == pytest.approx(policy, rel=1e-6)
    assert m["loss/entropy"].item() == pytest.approx(entropy, rel=1e-6)
    assert m["loss/reference_kl"].item() == pytest.approx(ref_kl, rel=1e-6)
    assert m["loss/stabilisation_kl"].item() == pytest.approx(stab_kl, rel=1e-6)
    assert m["loss/memory"].item() == pytest.approx(memory, rel=1e-6)
    assert m["loss/value"].item() == pytest.approx(value, rel=1e-6)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert m["policy/clip_fraction"].item() == pytest.approx(2 / 3)  # tokens 1 and 2 are outside [0.8, 1.2]
    assert m["value/clip_fraction"].item() == pytest.approx(0.5)


def test_memory_credit_weights_the_policy_term_and_only_it():
    from dataclasses import replace

    from rxmrl.training.mrl.objective import memory_credit

    cfg = ObjectiveConfig(moe_aux_coef=0.1)
    plain = mrl_loss(_tiny_batch(), cfg)[1]
    # token (0,1) weighs 3, the others 1; the padded column's weight must not count
    weights = torch.tensor([[1.0, 3.0], [1.0, 50.0]])
    weighted = mrl_loss(replace(_tiny_batch(), token_weights=weights), cfg)[1]
    s1, s2, s3 = 1.2, math.exp(-0.5), -2.0  # the surrogates of the hand-computed test above
    assert weighted["loss/policy"].item() == pytest.approx(-(s1 + 3 * s2 + s3) / 5, rel=1e-6)
    for term in ("loss/entropy", "loss/reference_kl", "loss/stabilisation_kl", "loss/value", "loss/memory"):
        assert weighted[term].item() == pytest.approx(plain[term].item(), rel=1e-6), term
    ones = mrl_loss(replace(_tiny_batch(), token_weights=torch.ones(2, 2)), cfg)[1]
    assert ones["loss/policy"].item() == pytest.approx(plain["loss/policy"].item(), rel=1e-6)
    # what memory made likelier, capped: a token the blank memory filtered out (-inf) weighs 1 + c * 10
    credit = memory_credit(torch.tensor([[-1.0, -0.5, -2.0]]), torch.tensor([[-3.0, float("-inf"), -1.0]]), 0.5)
    assert credit.tolist() == [[2.0, 6.0, 1.0]]
    with pytest.raises(ValueError, match="memory_credit"):
        ObjectiveConfig(memory_credit=-1.0)


def test_loss_gradient_flows_to_log_probs_values_and_memory():
    batch = _tiny_batch()
    for name in ("log_probs", "entropy", "values", "stm"):
        setattr(batch, name, getattr(batch, name).clone().requires_grad_(True))
    total, _ = mrl_loss(batch, ObjectiveConfig())
    total.backward()
    assert batch.log_probs.grad[1, 1] == 0  # padding gets no gradient
    assert batch.log_probs.grad[1, 0] != 0 and batch.values.grad.abs().sum() > 0 and batch.stm.grad.abs().sum() > 0


def test_impo_advantages_are_reward_minus_value_and_gae_matches_the_recursion():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])  # steps x episodes = 2 x 2, step-major
    values = torch.tensor([0.5, 1.0, 2.0, 1.0])
    adv, ret = compute_advantages(rewards, values, 2, "impo", normalize="none")
    assert torch.equal(adv, rewards - values) and torch.equal(ret, rewards)
    adv, ret = compute_advantages(rewards, values, 2, "gae", gamma=0.9, lam=0.5, normalize="none")
    # episode 0: step1 delta = 3 - 2 = 1; step0 delta = 1 + 0.9*2 - 0.5 = 2.3, A0 = 2.3 + 0.45*1
    assert adv.tolist() == pytest.approx([2.3 + 0.45 * 1, 2 + 0.9 * 1 - 1 + 0.45 * 3, 1.0, 3.0])
    assert ret.tolist() == pytest.approx((adv + values).tolist())
    per_step, _ = compute_advantages(rewards, values, 2, "impo", normalize="step")
    assert per_step.view(2, 2).mean(1).abs().max() < 1e-6


def test_explained_variance_is_one_for_perfect_and_zero_for_the_mean():
    target = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), target) == pytest.approx(0.0)


def test_entropy_of_a_top_k_distribution_has_a_finite_gradient_and_filtered_tokens_add_nothing():
    from rxmrl.model import SamplingConfig, processed_log_probs, safe_entropy

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    h = safe_entropy(processed_log_probs(logits, SamplingConfig(top_k=2)))
    p = torch.tensor([2.0, 1.0]).softmax(0)
    assert h.item() == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)
    h.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 2:].abs().sum() == 0


def test_a_token_filtered_by_the_current_policy_gives_a_finite_loss():
    batch = _tiny_batch()
    batch.log_probs = batch.log_probs.clone()
    batch.log_probs[0, 0] = float("-inf")
    batch.ref_log_probs = batch.ref_log_probs.clone()
    batch.ref_log_probs[0, 1] = float("-inf")
    total, _ = mrl_loss(batch, ObjectiveConfig())
    assert torch.isfinite(total)


def test_a_token_the_policy_nearly_filters_out_cannot_own_the_reference_kl():
    """log pi_theta at the floor while the reference gives the token -1: x = 49 would make k3 ~ 1e21 and its
    gradient swamp the minibatch; the cap keeps it at exp(10) - 11."""
    batch = _tiny_batch()
    batch.log_probs = batch.log_probs.clone().requires_grad_(False)
    batch.log_probs[0, 0] = -49.0
    batch.log_probs.requires_grad_(True)
    _, metrics = mrl_loss(batch, ObjectiveConfig())
    k3 = lambda x: math.exp(x) - x - 1  # noqa: E731
    capped = (k3(10.0) + k3(-1 - -2) + k3(-1 - -0.5)) / 3
    assert metrics["loss/reference_kl"].item() == pytest.approx(capped, rel=1e-5)


def test_every_epoch_batch_is_used_including_the_last_smaller_one():
    from rxmrl.training.mrl import epoch_batches

    batches = epoch_batches(10, 4, seed=0, stage=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(i for b in batches for i in b) == list(range(10))
    assert epoch_batches(10, 4, 0, 0, 1) != batches and epoch_batches(10, 4, 0, 0, 0) == batches


@pytest.mark.parametrize("settings", [dict(top_k=5), dict(top_k=5, top_p=0.6, temperature=0.7), dict(top_p=0.8),
                                      dict(), dict(greedy=True)])
def test_token_scores_equal_the_full_vocabulary_log_probs_and_entropy(settings):
    """The top-k shortcut of ``token_scores`` is the processed distribution, -inf for filtered tokens included."""
    from rxmrl.model import SamplingConfig, processed_log_probs, safe_entropy, token_scores

    logits = torch.randn(12, 40, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 40, (12,), generator=torch.Generator().manual_seed(1))
    sampling = SamplingConfig(**settings)
    full = processed_log_probs(logits, sampling)
    log_p, entropy = token_scores(logits, tokens, sampling)
    expected = full.gather(-1, tokens[:, None]).squeeze(-1)
    assert torch.equal(torch.isinf(log_p), torch.isinf(expected))
    if settings.get("top_k"):
        assert torch.isinf(log_p).any()  # some sampled-at-random tokens fall outside the top 5
    finite = torch.isfinite(expected)
    assert torch.allclose(log_p[finite], expected[finite], atol=1e-5)
    assert torch.allclose(entropy, safe_entropy(full), atol=1e-5)


@pytest.mark.parametrize("settings", [dict(top_k=5), dict(top_k=5, top_p=0.6, temperature=0.7), dict(top_p=0.8),
                                      dict(greedy=True)])
@pytest.mark.parametrize("bias", [False, True])
def test_head_token_scores_give_the_values_and_gradients_of_the_full_logits(settings, bias):
    """TopLogits' sparse backward is the dense one: d log p and d H reach hidden, weight and bias alike."""
    from rxmrl.model import SamplingConfig, head_token_scores, token_scores
    from rxmrl.model.sampling import TopLogits

    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(8, 40, bias=bias)
    rows = 2 * TopLogits.ROWS + 88  # several chunks, the last one short
    hidden = torch.randn(rows, 8, generator=generator, requires_grad=True)
    tokens = torch.randint(0, 40, (rows,), generator=generator)
    sampling = SamplingConfig(**settings)
    results = []
    for score in (lambda: token_scores(head(hidden), tokens, sampling),
                  lambda: head_token_scores(hidden, head, tokens, sampling)):
        head.zero_grad()
        hidden.grad = None
        log_p, entropy = score()
        finite = torch.isfinite(log_p)
        (log_p[finite].sum() + 0.5 * entropy.sum()).backward()
        results.append((log_p, entropy, hidden.grad.clone(), head.weight.grad.clone(),
                        head.bias.grad.clone() if bias else None))
    (lp, h, g_hidden, g_weight, g_bias), (lp2, h2, g_hidden2, g_weight2, g_bias2) = results
    assert torch.equal(torch.isinf(lp), torch.isinf(lp2))
    assert torch.allclose(lp[torch.isfinite(lp)], lp2[torch.isfinite(lp2)], atol=1e-5)
    assert torch.allclose(h, h2, atol=1e-5)
    assert torch.allclose(g_hidden, g_hidden2, atol=1e-5) and torch.allclose(g_weight, g_weight2, atol=1e-5)
    if bias:
        assert torch.allclose(g_bias, g_bias2, atol=1e-5)
    assert g_weight.abs().sum() > 0


def test_token_scores_fall_back_to_the_full_vocabulary_on_ties_at_the_kth_logit():
    from rxmrl.model import SamplingConfig, processed_log_probs, token_scores

    logits = torch.tensor([[3.0, 1.0, 1.0, 0.0]])  # top-2 keeps both tied 1.0 logits, as sampling does
    sampling = SamplingConfig(top_k=2)
    log_p, _ = token_scores(logits.expand(3, 4), torch.tensor([0, 1, 2]), sampling)
    assert torch.allclose(log_p, processed_log_probs(logits, sampling)[0, :3], atol=1e-6)
    assert torch.isfinite(log_p).all()
