"""DMPO: the DPO loss on hand-made log-probs, pairs ordered by the reward, memory written with the accepted
answer only, gradients through the memory write, a frozen reference, exact resume, and `rxmrl train dmpo`."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from rxmrl.config import ConfigError, apply_overrides
from rxmrl.envs.padded import PaddedIds
from rxmrl.envs.scoring import build_reward
from rxmrl.model import GREEDY, SamplingConfig
from rxmrl.training.mrl import MrlTrainer, RolloutPlan, collect_rollout, load_stage_data
from rxmrl.training.mrl.dmpo import DmpoInputs, dmpo_loss, preference_pairs, sequence_log_probs
from rxmrl.training.mrl.objective import memory_credit
from rxmrl.training.mrl.rollout import answer_rows, answer_tokens, rollout_env, stage_episodes

from test_mrl_trainer import finish, interrupted_and_resumed, one_thread, tiny_config, tiny_policy, tokenizer  # noqa: F401

DMPO = ["mrl.algorithm=dmpo", "mrl.group_size=2"]


def inputs(pa, pr, ra, rr, keep=None, **extra) -> DmpoInputs:
    pa, pr = torch.tensor(pa, requires_grad=True), torch.tensor(pr, requires_grad=True)
    size = pa.numel()
    stm = torch.zeros(size, 1, 2, 2)
    keep = torch.ones(size, dtype=torch.bool) if keep is None else torch.tensor(keep)
    return DmpoInputs(pa, pr, torch.tensor(ra), torch.tensor(rr), keep, stm, stm, torch.zeros(size), **extra)


# ------------------------------------------------------------------------------------------- the loss


def test_dpo_loss_is_minus_log_sigmoid_of_beta_times_the_log_ratio_margin():
    batch = inputs([-1.0, -2.0], [-3.0, -1.0], [-1.5, -2.0], [-2.5, -2.0])
    loss, terms = dmpo_loss(batch, beta=0.5, anchor_coef=0.0, memory_coef=0.0)
    z = 0.5 * torch.tensor([(-1.0 + 1.5) - (-3.0 + 2.5), (-2.0 + 2.0) - (-1.0 + 2.0)])  # [1.0, -1.0] / 2
    assert float(loss.detach()) == pytest.approx(float(-F.logsigmoid(z).mean()))
    assert float(terms["dmpo/accuracy"]) == 0.5  # the second pair still prefers the rejected answer
    loss.backward()
    # raising the accepted answer's log-prob lowers the loss, raising the rejected one's raises it
    assert bool((batch.policy_accepted.grad < 0).all() and (batch.policy_rejected.grad > 0).all())


def test_a_policy_equal_to_the_reference_costs_log_2_and_unkept_pairs_carry_no_gradient():
    batch = inputs([-1.0, -4.0, -2.0], [-2.0, -1.0, -3.0], [-1.0, -4.0, -2.0], [-2.0, -1.0, -3.0],
                   keep=[True, False, True])
    loss, terms = dmpo_loss(batch, beta=0.1, anchor_coef=0.0, memory_coef=0.0)
    assert float(loss.detach()) == pytest.approx(math.log(2))
    assert float(terms["dmpo/pairs_kept"]) == pytest.approx(2 / 3)
    loss.backward()
    assert float(batch.policy_accepted.grad[1]) == 0.0 and float(batch.policy_rejected.grad[1]) == 0.0
    assert float(batch.policy_accepted.grad[0]) != 0.0


def test_the_anchored_term_pulls_the_neutral_answer_to_the_reference_and_the_memory_term_is_impos():
    neutral = torch.tensor([-1.0, -3.0], requires_grad=True)
    batch = inputs([-1.0, -1.0], [-2.0, -2.0], [-1.0, -1.0], [-2.0, -2.0],
                   policy_neutral=neutral, ref_neutral=torch.tensor([-1.5, -2.0]))
    plain, _ = dmpo_loss(batch, beta=0.1, anchor_coef=0.0, memory_coef=0.0)
    anchored, terms = dmpo_loss(batch, beta=0.1, anchor_coef=0.2, memory_coef=0.0)
    assert float(terms["loss/anchor"]) == pytest.approx((0.5 + 1.0) / 2)
    assert float((anchored - plain).detach()) == pytest.approx(0.2 * 0.75)
    anchored.backward()
    assert neutral.grad.tolist() == pytest.approx([0.1, -0.1])  # each pulled toward its reference
    batch.stm = torch.ones(2, 1, 2, 2)
    batch.steps = torch.tensor([0.0, 3.0])
    with_memory, terms = dmpo_loss(batch, beta=0.1, anchor_coef=0.0, memory_coef=0.5)
    assert float(terms["loss/memory"]) == pytest.approx(0.5 * (1 + 2) / 2)  # sqrt(t + 1) · c · MSE(=1)
    assert float((with_memory - plain).detach()) == pytest.approx(float(terms["loss/memory"]))


def test_sequence_log_probs_average_over_real_tokens_only():
    lp = torch.tensor([[-1.0, -3.0, -100.0], [-2.0, -100.0, -100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert sequence_log_probs(lp, mask).tolist() == [-2.0, -2.0]


def test_memory_credit_weighs_the_tokens_memory_made_likelier_and_the_weighted_mean_uses_them():
    with_memory = torch.tensor([[-1.0, -0.5, -3.0]])
    blank = torch.tensor([[-1.0, -2.5, -2.0]])  # memory made token 1 likelier by 2 nats, token 2 less likely
    weights = memory_credit(with_memory, blank, strength=2.0)
    assert weights.tolist() == [[1.0, 5.0, 1.0]]
    mask = torch.tensor([[True, True, True]])
    assert float(sequence_log_probs(with_memory, mask, weights)) == pytest.approx((-1 - 2.5 - 3) / 7)
    assert memory_credit(with_memory, blank, 0.0).eq(1).all()


# ------------------------------------------------------------------------------------------- pairs


def test_pairs_accept_the_best_reward_reject_the_worst_and_drop_close_or_tied_ones():
    rewards = torch.tensor([1.0, 9.0, 5.0,   4.0, 4.0, 4.0,   6.0, 2.0, 6.5])  # 3 (episode, step) groups of K=3
    pairs = preference_pairs(rewards, 3, min_margin=1.0)
    assert pairs.accepted.tolist() == [1, 5, 8] and pairs.rejected.tolist() == [0, 3, 7]
    assert pairs.neutral.tolist() == [2, 4, 6]
    assert pairs.keep.tolist() == [True, False, True] and pairs.margin.tolist() == [8.0, 0.0, 4.5]
    assert preference_pairs(rewards, 3, min_margin=5.0).keep.tolist() == [True, False, False]
    assert preference_pairs(rewards, 3, min_margin=0.0).keep.tolist() == [True, False, True]  # a tie never trains
    assert preference_pairs(torch.tensor([1.0, 2.0]), 2, 0.5).neutral is None


def test_reference_answers_round_trip_into_generated_answers_cut_with_eos():
    rows = PaddedIds.from_lists([[4, 10, 11, 12, 2], [4, 20, 2]])  # [A] a [EOS]
    tokens, mask = answer_tokens(rows, max_tokens=8)
    assert tokens[mask].tolist() == [10, 11, 12, 2, 20, 2]
    assert answer_rows(tokens, mask).to_lists() == rows.to_lists()
    cut, cut_mask = answer_tokens(rows, max_tokens=2)
    assert cut.masked_fill(~cut_mask, -1).tolist() == [[10, 2], [20, 2]]


# --------------------------------------------------------------------------- rollout: the accepted answer


class PreferMember:
    """A reward that pays member ``favoured`` of every group of three 10, the others 1 and 0."""

    def __init__(self, favoured: int) -> None:
        self.favoured = favoured

    def __call__(self, generated, reference, saved, **kwargs):
        return torch.tensor([10.0 if row % 3 == self.favoured else float(row % 3 == (self.favoured + 1) % 3)
                             for row in range(len(generated))])


def dmpo_rollout(tokenizer, reward, with_reference=True):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 3)
    episodes = stage_episodes(data.episodes, data.long_range, 2)
    env = rollout_env(episodes, 2, reward, tokenizer, max_answer_tokens=6)
    plan = RolloutPlan(SamplingConfig(temperature=1.0), max_answer_tokens=6, group_size=2,
                       reference_member="none" if with_reference else "absent", continue_with="best",
                       reference_sampling=GREEDY)
    rollout = collect_rollout(policy, env, episodes, plan, reference=policy, generator=torch.Generator().manual_seed(0))
    return rollout, episodes, env


@pytest.mark.parametrize("favoured", [0, 2])  # a sampled answer, or the reference answer (member G = 2)
def test_memory_takes_the_accepted_answer_and_never_the_rejected_one(tokenizer, favoured):
    rollout, episodes, _ = dmpo_rollout(tokenizer, PreferMember(favoured))
    B, K = len(episodes), 3
    assert rollout.group_size == K and rollout.size == 2 * B * K
    pairs = preference_pairs(rollout.rewards, K, min_margin=1.0)
    for b in range(B):  # step 0's pair of episode b; step 1 reads the interaction written after it
        accepted, rejected = int(pairs.accepted[b]), int(pairs.rejected[b])
        assert accepted == b * K + favoured and rejected == b * K + (favoured + 2) % 3
        row = B * K + b * K  # step 1, episode b (every member shares the write)
        written = rollout.write_ids[row][rollout.write_mask[row]].tolist()
        answer = answer_rows(rollout.answers[[accepted]], rollout.mask[[accepted]]).to_lists()[0]
        assert written == rollout.queries[accepted] + answer
        other = answer_rows(rollout.answers[[rejected]], rollout.mask[[rejected]]).to_lists()[0]
        assert other == answer or written != rollout.queries[rejected] + other


def test_the_reference_answer_is_the_last_member_scored_from_the_same_stm(tokenizer):
    reward = build_reward("default", "policy-embedding", tokenizer, policy=tiny_policy(tokenizer.vocab_size))
    rollout, episodes, _ = dmpo_rollout(tokenizer, reward)
    B, K = len(episodes), 3
    tokens, mask = answer_tokens(PaddedIds.from_lists([
        [4, *tokenizer.encode(e.interactions[0].answer), 2] for e in episodes]), 6)
    for b in range(B):
        row = b * K + 2
        assert rollout.answers[row][rollout.mask[row]].tolist() == tokens[b][mask[b]].tolist()
        assert all(torch.equal(rollout.stm_read[b * K], rollout.stm_read[b * K + k]) for k in range(K))
    # the reference policy's log-probs are the model's own distribution (here: the same weights)
    scored = rollout.ref_log_probs.masked_fill(~rollout.mask, 0).sum()
    assert math.isfinite(float(scored)) and float(scored) < 0


def test_the_blank_reference_scores_every_answer_from_a_memory_never_written(tokenizer):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 2)
    episodes = stage_episodes(data.episodes, data.long_range, 2)
    reward = build_reward("default", "policy-embedding", tokenizer, policy=policy)
    env = rollout_env(episodes, 2, reward, tokenizer, max_answer_tokens=6)
    plan = RolloutPlan(SamplingConfig(), max_answer_tokens=6, group_size=2, reference_member="none",
                       continue_with="best", reference_sampling=GREEDY, blank_reference=True)
    rollout = collect_rollout(policy, env, episodes, plan, reference=policy, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    policy.initial_stm(len(episodes), generator)  # the episodes' own start, then the blank one
    blank = policy.initial_stm(len(episodes), generator).repeat_interleave(3, 0)
    first = slice(0, len(episodes) * 3)  # step 0: the STM of the first write differs from a blank one
    scored = policy.score(rollout.queries[first], rollout.answers[first], blank, answer_mask=rollout.mask[first],
                          sampling=GREEDY).log_probs
    assert rollout.ref_blank_log_probs.shape == rollout.ref_log_probs.shape
    assert not torch.allclose(rollout.ref_blank_log_probs, rollout.ref_log_probs)
    torch.testing.assert_close(rollout.ref_blank_log_probs[first].masked_fill(~rollout.mask[first], 0),
                               scored.masked_fill(~rollout.mask[first], 0), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------------- trainer


def test_gradients_reach_memory_attention_and_the_encoder_and_the_reference_stays_frozen(tokenizer, tmp_path):
    cfg = tiny_config(*DMPO, 'stages.0.trainable=["memory_attention", "encoder"]', "mrl.dmpo.min_margin=0")
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    assert trainer.model.critic is None
    before = {k: v.clone() for k, v in trainer.model.policy.state_dict().items()}
    reference = {k: v.clone() for k, v in trainer.reference.state_dict().items()}
    trainer.fit()
    changed = [k for k, v in trainer.model.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("memory_attention") for k in changed) and any(k.startswith("encoder") for k in changed)
    assert not any(k.startswith(("decoder", "memory_cross")) for k in changed), changed
    assert all(torch.equal(v, reference[k]) for k, v in trainer.reference.state_dict().items())
    assert not any(p.requires_grad for p in trainer.reference.parameters())


def test_dmpo_resumes_exactly_after_an_interruption(tokenizer, tmp_path):
    cfg = tiny_config(*DMPO, "mrl.dmpo.anchor_coef=0.1", 'stages.0.trainable=["memory_attention", "decoder"]')
    full, resumed = interrupted_and_resumed(cfg, tokenizer, tmp_path)
    finish(full, resumed)
    assert any(not torch.equal(a, b) for a, b in zip(full.model.state_dict().values(),
                                                     tiny_policy(tokenizer.vocab_size).state_dict().values()))


@pytest.mark.parametrize("overrides,message", [
    (["mrl.algorithm=dmpo", "mrl.dmpo.candidates=samples"], "set group_size >= 2"),
    (["mrl.algorithm=dmpo", "mrl.group_size=1", "mrl.dmpo.anchor_coef=0.1"], "anchors a third"),
    (["mrl.algorithm=dmpo", "stages.0.teacher_forcing=true"], "writes the accepted answer"),
    (["mrl.algorithm=dmpo", "mrl.dmpo.beta=0"], "beta > 0"),
])
def test_a_dmpo_config_that_cannot_make_pairs_is_refused(overrides, message):
    from rxmrl.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(tiny_config(), overrides))


def test_rxmrl_train_dmpo_runs_the_curriculum_with_the_dpo_loss(tokenizer, tmp_path, capsys):
    from rxmrl.cli import main

    warm = tmp_path / "warm"
    tiny_policy(tokenizer.vocab_size).save_pretrained(warm)
    tokenizer.save(warm)
    sets = ["mrl.batch_episodes=3", "mrl.minibatch_size=4", "mrl.ppo_epochs=1", "mrl.max_answer_tokens=5",
            "tensorboard=false", "progress=false", "stages.0.num_episodes=3", "stages.0.eval_episodes=3",
            "stages.1.num_episodes=3", "stages.1.eval_episodes=3"]
    run = tmp_path / "run"
    assert main(["train", "dmpo", "--init", str(warm), "--run-dir", str(run),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "-> DMPO" in out and 'algorithm = "dmpo"' in (run / "config.toml").read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "train/loss/dpo" in r]
    assert len(trained) == 2 and all("train/loss/value" not in r for r in trained)
    assert json.loads((run / "comparison.json").read_text())["algorithm"] == "dmpo"
    assert (run / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("pairs", ["online", "offline"])
def test_offline_pairs_come_from_the_frozen_warm_start_and_online_ones_from_the_policy(tokenizer, tmp_path, pairs):
    cfg = tiny_config(*DMPO, f"mrl.dmpo.pairs={pairs}")
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    stage, (data, _) = cfg.stages[0], trainer.stage_data[0]

    def answers():
        torch.manual_seed(7)
        return trainer.collect(stage, data, [0, 1, 2]).answers
    before = answers()
    with torch.no_grad():
        for parameter in trainer.model.policy.decoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    assert torch.equal(answers(), before) == (pairs == "offline")
    trainer.close()
