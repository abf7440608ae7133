"""Group estimators (grpo, rloo): advantages on hand-made rewards, groups that share their STM, a continuing
answer chosen without its reward, and the trainer with no critic, resumed exactly."""

from __future__ import annotations

import pytest
import torch

from rxmrl.config import ConfigError, apply_overrides
from rxmrl.envs.padded import PaddedIds
from rxmrl.model import SamplingConfig
from rxmrl.training.mrl import MrlTrainer, collect_rollout, compute_advantages, load_stage_data
from rxmrl.training.mrl.advantages import group_advantages
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.rollout import continuing_members, rollout_env, stage_episodes
from rxmrl.envs.scoring import build_reward

from test_mrl_trainer import (env_for, finish, interrupted_and_resumed, one_thread, tiny_config,  # noqa: F401
                              tiny_policy, tokenizer)


def test_equal_rewards_in_a_group_give_zero_advantage():
    rewards = torch.tensor([3.0, 3.0, 3.0, 1.0, 5.0, 9.0])  # two groups of 3
    for estimator in ("grpo", "rloo"):
        adv = group_advantages(rewards, 3, estimator)
        assert torch.equal(adv[:3], torch.zeros(3)), estimator
        assert adv[3] < 0 < adv[5] and adv[3:].sum().abs() < 1e-5


def test_leave_one_out_excludes_the_answer_itself_and_grpo_normalises_by_the_group():
    rewards = torch.tensor([1.0, 5.0, 9.0, 2.0])  # one group of 4
    rloo = group_advantages(rewards, 4, "rloo")
    for g in range(4):
        others = torch.cat([rewards[:g], rewards[g + 1:]])
        assert rloo[g] == pytest.approx(float(rewards[g] - others.mean()))
    grpo = group_advantages(rewards, 4, "grpo")
    torch.testing.assert_close(grpo, (rewards - rewards.mean()) / (rewards.std() + 1e-8))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3, "rloo")


def test_compute_advantages_takes_groups_step_major_and_returns_the_rewards():
    rewards = torch.arange(12, dtype=torch.float32)  # 2 steps x 3 episodes x G = 2
    adv, returns = compute_advantages(rewards, torch.zeros(12), 2, "rloo", normalize="none", group_size=2)
    torch.testing.assert_close(adv, torch.tensor([-1.0, 1.0] * 6))  # each pair differs by 1
    assert torch.equal(returns, rewards)
    with pytest.raises(ValueError, match="one answer per step"):
        compute_advantages(rewards, torch.zeros(12), 2, "impo", group_size=2)


def group_rollout(tokenizer, reward=None, seed=0, group_size=3):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 3)
    episodes = stage_episodes(data.episodes, data.long_range, 2)
    reward = reward or build_reward("default", "policy-embedding", tokenizer, policy=policy)
    env = rollout_env(episodes, 2, reward, tokenizer, max_answer_tokens=6)
    sampling = SamplingConfig(temperature=1.0)
    rollout = collect_rollout(policy, env, episodes, RolloutPlan(sampling, max_answer_tokens=6, group_size=group_size),
                              generator=torch.Generator().manual_seed(seed))
    return rollout, len(episodes)


def test_every_group_member_answers_the_same_query_from_the_same_stm(tokenizer):
    rollout, episodes = group_rollout(tokenizer)
    G = 3
    assert rollout.size == 2 * episodes * G and rollout.group_size == G
    for first in range(0, rollout.size, G):
        members = slice(first, first + G)
        assert all(torch.equal(rollout.stm_read[first], row) for row in rollout.stm_read[members])
        assert all(torch.equal(rollout.stm_prev[first], row) for row in rollout.stm_prev[members])
        assert all(torch.equal(rollout.write_ids[first], row) for row in rollout.write_ids[members])
        assert len({tuple(q) for q in rollout.queries[members]}) == 1
    answers = {tuple(rollout.answers[g][rollout.mask[g]].tolist()) for g in range(G)}
    assert len(answers) > 1  # sampled, not copies: the group has something to compare
    assert rollout.critic_ids is None and bool((rollout.values == 0).all())


class FavourFirstMember:
    """A reward that pays row b·3 + 0 of every group 10 and the rest 0: any reward-driven choice would show."""

    def __call__(self, generated, reference, saved, **kwargs):
        return torch.tensor([10.0 if row % 3 == 0 else 0.0 for row in range(len(generated))])


def written_answers(rollout, episodes, G=3):
    """The interaction each episode went on with, as the second step's write shows it."""
    second = slice(episodes * G, 2 * episodes * G, G)
    return [tuple(row[m].tolist()) for row, m in zip(rollout.write_ids[second], rollout.write_mask[second])]


def test_the_continuing_answer_is_drawn_without_looking_at_its_reward(tokenizer):
    plain, episodes = group_rollout(tokenizer, seed=5)
    rigged, _ = group_rollout(tokenizer, reward=FavourFirstMember(), seed=5)
    assert rigged.rewards.view(-1, 3)[:, 0].eq(10).all()
    assert written_answers(plain, episodes) == written_answers(rigged, episodes)  # same draw, other rewards
    # and the written interaction is one of its group's answers (query + [A] answer)
    for b, written in enumerate(written_answers(plain, episodes)):
        group = [tuple(plain.answers[b * 3 + g][plain.mask[b * 3 + g]].tolist()) for g in range(3)]
        assert any(written[-len(a):] == a or written[-len(a) - 1:-1] == a for a in group)


def test_continuing_members_are_uniform_over_the_group():
    counts = torch.zeros(4)
    rows = continuing_members(4000, 4, torch.Generator().manual_seed(0))
    members = rows - torch.arange(4000) * 4
    counts += torch.bincount(members, minlength=4)
    assert bool((members >= 0).all() and (members < 4).all())
    assert float((counts / 4000 - 0.25).abs().max()) < 0.03


def test_score_alternatives_scores_each_member_like_a_step_and_leaves_the_env_where_it_was(tokenizer):
    policy = tiny_policy(tokenizer.vocab_size)
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 2)
    episodes = stage_episodes(data.episodes, data.long_range, 2)
    env = rollout_env(episodes, 2, build_reward("default", "policy-embedding", tokenizer, policy=policy), tokenizer)
    env.reset(options={"episodes": episodes})
    answers = [[4, 100 + k, 200 + k, 2] for k in range(4)]  # rows b·2 + g
    group = env.score_alternatives(PaddedIds.from_lists(answers), group_size=2)
    assert group.rewards.shape == (4,)
    for g in range(2):
        single = rollout_env(episodes, 2, env.reward, tokenizer)
        single.reset(options={"episodes": episodes})
        out = single.step(PaddedIds.from_lists([answers[g], answers[2 + g]]))
        torch.testing.assert_close(group.rewards[[g, 2 + g]], out.rewards)
    assert env.step(PaddedIds.from_lists([answers[0], answers[2]])).step == 0  # still at step 0


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_group_estimators_train_without_a_critic_and_resume_exactly(tokenizer, tmp_path, estimator):
    cfg = tiny_config(f"mrl.advantages.estimator={estimator}", "mrl.group_size=3")
    full, resumed = interrupted_and_resumed(cfg, tokenizer, tmp_path)
    assert full.model.critic is None and "critic" not in full._trainable(cfg.stages[0])
    finish(full, resumed)
    from rxmrl.training.metrics import read_metrics

    records = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "rollout/reward" in r]
    assert records and all(r["rollout/group_reward_std"] >= 0 and "rollout/value" not in r for r in records)


@pytest.mark.parametrize("overrides,message", [
    (["mrl.advantages.estimator=grpo"], "set group_size >= 2"),
    (["mrl.group_size=4"], "set group_size = 1"),
])
def test_estimator_and_group_size_must_agree(overrides, message):
    from rxmrl.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(tiny_config(), overrides))


# ------------------------------------------------------------------------------------- reference member
REFERENCE_MEMBER = ("mrl.advantages.estimator=grpo", "mrl.group_size=2", "mrl.reference_member=true")


def test_the_reference_member_closes_each_group_with_the_policys_own_log_probs_and_never_continues(tokenizer):
    from rxmrl.training.mrl.objective import LOG_PROB_FLOOR
    from rxmrl.training.mrl.rollout import answer_tokens

    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 3)
    env, episodes = env_for(data, 2, policy, tokenizer)
    sampling = SamplingConfig(temperature=1.0, top_k=20)
    plan = RolloutPlan(sampling, max_answer_tokens=6, group_size=2, reference_member="policy")
    rollout = collect_rollout(policy, env, episodes, plan, reference=policy, generator=torch.Generator().manual_seed(0))
    members, size = 3, len(episodes)
    assert rollout.group_size == members and rollout.size == 2 * size * members
    last = torch.arange(members - 1, rollout.size, members)  # member G of every group: the reference answer
    env.reset(options={"episodes": episodes})
    ref_tokens, ref_mask = answer_tokens(env.current_references(), 6)
    width = ref_tokens.shape[1]
    assert torch.equal(rollout.answers[last[:size], :width], ref_tokens)
    # its behaviour log-probs are the policy's own from the group's STM: the ratio starts at 1
    scored = policy.score(rollout.queries, rollout.answers, rollout.stm_read, answer_mask=rollout.mask,
                          sampling=sampling).log_probs.clamp_min(LOG_PROB_FLOOR).masked_fill(~rollout.mask, 0)
    torch.testing.assert_close(rollout.old_log_probs[last], scored[last], atol=1e-4, rtol=0)
    assert rollout.old_log_probs[last][rollout.mask[last]].lt(0).all()
    # the episode goes on with a sampled member: the interaction written at step 1 is one of the samples
    written = rollout.write_ids[size * members:][::members]  # step 1's write, one row per episode
    for b in range(size):
        row = written[b][rollout.write_mask[size * members + b * members]].tolist()
        sampled = [rollout.answers[b * members + g][rollout.mask[b * members + g]].tolist() for g in range(2)]
        assert any(row[len(row) - len(a) - 1:-1] == a or row[-len(a):] == a for a in sampled if a)


def test_a_reference_member_run_trains_the_scheduled_steps_and_is_refused_where_it_means_nothing(tokenizer, tmp_path):
    trainer = MrlTrainer(tiny_config(*REFERENCE_MEMBER), tiny_policy(tokenizer.vocab_size), tokenizer,
                         run_dir=tmp_path)
    assert trainer.model.critic is None and trainer.config.mrl.samples_per_step == 3
    scheduled = trainer.total_updates()
    trainer.fit()
    assert trainer.step == scheduled
    with pytest.raises(ValueError, match="reference_member joins the reference answer to a group"):
        tiny_config("mrl.reference_member=true").mrl.validate()  # impo: no group
    with pytest.raises(ValueError, match="dmpo.candidates"):
        tiny_config("mrl.reference_member=true", "mrl.algorithm=dmpo", "mrl.group_size=2").mrl.validate()
