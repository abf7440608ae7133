"""MRL rollouts driven by the batched env: same rewards as the trainer's former scorer, memory writes as built."""

from __future__ import annotations

import pytest
import torch

from rxmrl.model import ReactiveTransformer, RxTConfig, SamplingConfig, interaction_ids
from rxmrl.rewards import RunningMean
from rxmrl.special_tokens import ANSWER_ID, EOS_ID, PAD_ID
from rxmrl.tokenizer import default_tokenizer
from rxmrl.training.mrl import StageConfig, build_reward, collect_rollout, load_stage_data
from rxmrl.training.mrl.config import RewardSettings
from rxmrl.training.mrl.rollout import (RolloutScorer, answer_rows, rollout_env, stage_episodes,
                                        tokenize_episodes, truncate_interactions)
from rxmrl.envs.padded import PaddedIds


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


def test_truncated_interactions_keep_a_final_eos_like_interaction_ids():
    rows = [interaction_ids([1, 3, 20, 21, 22], [4, 30, 31, 32, 33, 2]), interaction_ids([1, 3, 20], [4, 2])]
    cut = truncate_interactions(PaddedIds.from_lists(rows), 6)
    assert cut.to_lists() == [interaction_ids([1, 3, 20, 21, 22], [4, 30, 31, 32, 33, 2], 6), rows[1]]
    assert cut.ids.shape[1] == 6


def test_env_driven_rollout_gives_the_former_scorer_rewards_for_the_same_answers(tokenizer):
    """Mixed cumulative / long-range rows (long-range cut from 4 follow-ups to 3: its final question kept)."""
    policy = tiny_policy(tokenizer.vocab_size)
    stage = StageConfig(steps=3, data_steps=4, strategy="mixed")
    data = load_stage_data(stage, "embedded", "train", 4)
    assert set(data.long_range) == {False, True}
    reward = build_reward(RewardSettings(), policy, tokenizer)
    episodes = stage_episodes(data.episodes, data.long_range, 3)
    env = rollout_env(episodes, 3, reward, tokenizer, max_answer_tokens=6)
    rollout = collect_rollout(policy, env, episodes, SamplingConfig(greedy=True), max_answer_tokens=6,
                              generator=torch.Generator().manual_seed(0))
    old = tokenize_episodes(data.episodes, data.long_range, 3, tokenizer)
    scorer = RolloutScorer(reward, decode=tokenizer.decode_batch)
    written = [[interaction_ids(q, a) for q, a in zip(old.saved_query, old.saved_answer, strict=True)]]
    running_mean = RunningMean()
    size = len(episodes)
    for t in range(3):
        rows = slice(t * size, (t + 1) * size)
        answers, mask = rollout.answers[rows], rollout.mask[rows]
        rewards, components = scorer.score_step(t, old, written, answers, mask, running_mean)
        torch.testing.assert_close(rollout.rewards[rows], rewards, atol=1e-5, rtol=0)
        for name, value in components.items():
            torch.testing.assert_close(rollout.components[name][rows], value, atol=1e-5, rtol=0, msg=name)
        own = [row[m].tolist() for row, m in zip(answers, mask, strict=True)]
        assert rollout.queries[rows] == old.queries[t]
        written.append([interaction_ids(q, a) for q, a in zip(old.queries[t], own, strict=True)])
