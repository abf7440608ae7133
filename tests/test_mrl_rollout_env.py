"""MRL rollouts driven by the batched env: same rewards as the trainer's former scorer, memory writes as built."""

from __future__ import annotations

import pytest
import torch

from rxmrl.data import default_tokenizer
from rxmrl.model import ReactiveTransformer, RxTConfig, SamplingConfig, interaction_ids
from rxmrl.special_tokens import ANSWER_ID, EOS_ID, PAD_ID
from rxmrl.training.mrl.critic import Critic
from rxmrl.envs.scoring import build_reward
from rxmrl.training.mrl import RolloutPlan, StageConfig, collect_rollout, load_stage_data
from rxmrl.envs.padded import PaddedIds
from rxmrl.training.mrl.rollout import answer_rows, rollout_env, stage_episodes, truncate_interactions


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def tiny_policy(vocab: int) -> ReactiveTransformer:
    torch.manual_seed(0)
    return ReactiveTransformer(RxTConfig(vocab_size=vocab, dim=32, num_layers=2, num_heads=2, query_heads=2,
                                         kv_heads=2, num_experts=2, experts_per_token=1, expert_dim=32,
                                         encoder_ff_dim=48, stm_slots=8, memory_attention="simple")).eval()


def test_answer_rows_open_with_the_answer_token_and_close_rows_cut_by_the_length_limit():
    tokens = torch.tensor([[7, 8, EOS_ID, PAD_ID], [9, 10, 11, 12], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    rows = answer_rows(tokens, mask)
    assert rows.to_lists() == [[ANSWER_ID, 7, 8, EOS_ID], [ANSWER_ID, 9, 10, 11, 12, EOS_ID], [ANSWER_ID, EOS_ID]]
    assert rows.ids[0, 4:].eq(PAD_ID).all()


def test_answer_rows_leave_a_cut_row_open_when_the_policy_writes_as_generated():
    tokens = torch.tensor([[7, 8, EOS_ID, PAD_ID], [9, PAD_ID, 11, 12]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    rows = answer_rows(tokens, mask, "as-generated")
    assert rows.to_lists() == [[ANSWER_ID, 7, 8, EOS_ID], [ANSWER_ID, 9, PAD_ID, 11, 12]]


def test_truncated_interactions_keep_a_final_eos_like_interaction_ids():
    rows = [interaction_ids([1, 3, 20, 21, 22], [4, 30, 31, 32, 33, 2]), interaction_ids([1, 3, 20], [4, 2])]
    cut = truncate_interactions(PaddedIds.from_lists(rows), 6)
    assert cut.to_lists() == [interaction_ids([1, 3, 20, 21, 22], [4, 30, 31, 32, 33, 2], 6), rows[1]]
    assert cut.ids.shape[1] == 6


def test_rollout_rewards_are_the_envs_own_step_rewards_for_the_same_answers(tokenizer):
    """Mixed cumulative / long-range rows (long-range cut from 4 follow-ups to 3: its final question kept);
    memory writes cut to a short ``max_interaction_len`` (the env still scores the full interactions).

    Checked against the trainer's former scorer (``RolloutScorer``, removed since) before it was deleted."""
    policy = tiny_policy(tokenizer.vocab_size)
    stage = StageConfig(steps=3, data_steps=4, strategy="mixed")
    data = load_stage_data(stage, "embedded", "train", 4)
    assert set(data.long_range) == {False, True}
    reward = build_reward("default", "policy-embedding", tokenizer, policy=policy)
    episodes = stage_episodes(data.episodes, data.long_range, 3)
    assert [e.interactions[-1] for e in episodes] == [
        e.interactions[-1 if lr else 2] for e, lr in zip(data.episodes, data.long_range, strict=True)]
    env = rollout_env(episodes, 3, reward, tokenizer, max_answer_tokens=6)
    plan = RolloutPlan(SamplingConfig(greedy=True), max_answer_tokens=6, max_interaction_len=16)
    rollout = collect_rollout(policy, env, episodes, plan, generator=torch.Generator().manual_seed(0),
                              critic=Critic(policy))
    fresh = rollout_env(episodes, 3, reward, tokenizer, max_answer_tokens=6)
    start = fresh.reset(options={"episodes": episodes})
    query, size = start.query, len(episodes)
    for t in range(3):
        rows = slice(t * size, (t + 1) * size)
        answers, mask = rollout.answers[rows], rollout.mask[rows]
        assert rollout.queries[rows] == query.to_lists()
        out = fresh.step(answer_rows(answers, mask))
        torch.testing.assert_close(rollout.rewards[rows], out.rewards, atol=1e-6, rtol=0)
        for name, value in out.components.items():
            torch.testing.assert_close(rollout.components[name][rows], value, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(rollout.components["fact_recall"][rows], out.fact_recall, equal_nan=True)
        if t + 1 < 3:  # the next step writes (query t, own answer t), cut to 16 tokens, with one [A]
            following = slice((t + 1) * size, (t + 2) * size)
            for b, (q, row, m) in enumerate(zip(query.to_lists(), answers, mask, strict=True)):
                write = rollout.write_ids[following][b][rollout.write_mask[following][b]].tolist()
                assert write == interaction_ids(q, row[m].tolist(), 16)
                assert write.count(ANSWER_ID) == 1 and len(write) <= 16
        query = out.next_query
    # the critic read the saved data each step is about: for long-range rows' last step, interaction 0
    last = slice(2 * size, 3 * size)
    saved = truncate_interactions(start.saved_interaction, 16).to_lists()
    for b, long_range in enumerate(data.long_range):
        critic_row = rollout.critic_ids[last][b][rollout.critic_mask[last][b]].tolist()
        assert (critic_row[:len(saved[b])] == saved[b]) == long_range


def test_teacher_forcing_writes_the_reference_answer_and_still_scores_the_policys_own(tokenizer):
    policy = tiny_policy(tokenizer.vocab_size)
    data = load_stage_data(StageConfig(steps=2), "embedded", "train", 2)
    reward = build_reward("default", "policy-embedding", tokenizer, policy=policy)
    episodes = stage_episodes(data.episodes, data.long_range, 2)
    env = rollout_env(episodes, 2, reward, tokenizer, max_answer_tokens=4)
    rollout = collect_rollout(policy, env, episodes,
                              RolloutPlan(SamplingConfig(greedy=True), max_answer_tokens=4, teacher_forcing=True),
                              generator=torch.Generator().manual_seed(0))
    for b, episode in enumerate(episodes):
        follow_up = episode.interactions[0]
        write = rollout.write_ids[2 + b][rollout.write_mask[2 + b]].tolist()
        assert write == interaction_ids(tokenizer.encode_query(follow_up.query),
                                        tokenizer.encode_answer(follow_up.answer), 256)
    fresh = rollout_env(episodes, 2, reward, tokenizer, max_answer_tokens=4)
    fresh.reset(options={"episodes": episodes, "teacher_forcing": True})
    for t in range(2):
        rows = slice(2 * t, 2 * t + 2)
        out = fresh.step(answer_rows(rollout.answers[rows], rollout.mask[rows]))
        torch.testing.assert_close(rollout.rewards[rows], out.rewards, atol=1e-6, rtol=0)


def test_validation_with_teacher_forcing_holds_every_fact_and_writes_the_reference(tokenizer):
    """The retention protocol: memory gets the reference answers, so every fact asked about is held (held
    recall = recall); with the policy's own writes most follow-ups ask about scenes memory never got."""
    from rxmrl.training.mrl.evaluate import evaluate_policy

    policy = tiny_policy(tokenizer.vocab_size)
    stage = StageConfig(steps=4)
    data = load_stage_data(stage, "embedded", "validation", 6)
    reward = build_reward("default", "random-embedding", tokenizer)
    env = rollout_env(stage_episodes(data.episodes, data.long_range, 4), 4, reward, tokenizer, max_answer_tokens=6)
    forced = evaluate_policy(policy, env, data, RolloutPlan(SamplingConfig(greedy=True), 6, teacher_forcing=True), 6)
    own = evaluate_policy(policy, env, data, RolloutPlan(SamplingConfig(greedy=True), 6, teacher_forcing=False), 6)
    assert forced.held_fact_recall == pytest.approx(forced.fact_recall)
    assert not torch.isnan(forced.episode_held_fact_recall).any()
    assert torch.isnan(own.episode_held_fact_recall).any() or own.held_fact_recall != own.fact_recall
    assert not torch.equal(forced.step_rewards, own.step_rewards)  # what memory holds changes the answers
