"""Retention: recall with the reference conversation in memory, vs a reset memory, vs a baseline, paired."""

import numpy as np
import pytest

from rxmrl.data import load_curriculum
from rxmrl.envs import BatchedMrlEnv
from rxmrl.envs.agents import RxTAgent
from rxmrl.evaluation import evaluate
from rxmrl.evaluation.retention import measure_retention, retention_env
from supervised_helpers import tiny_model, tokenizer


@pytest.fixture(scope="module")
def episodes():
    return load_curriculum("embedded", config="steps-2", split="validation", num_episodes=6)


def env_of(episodes, teacher_forcing=True):
    return BatchedMrlEnv(3, episodes=episodes, steps=2, similarity="random-embedding", tokenizer=tokenizer(),
                         teacher_forcing=teacher_forcing, order="sequential", seed=0)


def test_retention_refuses_an_env_that_writes_the_agents_own_answers(episodes):
    with pytest.raises(ValueError, match="teacher_forcing=True"):
        measure_retention({"a": tiny_model()}, env_of(episodes, teacher_forcing=False), 6)
    with pytest.raises(ValueError, match="baseline 'b'"):
        measure_retention({"a": tiny_model()}, env_of(episodes), 6, baseline="b")


def test_gap_pairs_memory_with_reset_memory_and_gain_pairs_with_the_baseline(episodes):
    models = {"warm_start": tiny_model(0), "mrl": tiny_model(1), "copy": tiny_model(0)}
    env = env_of(episodes)
    result = measure_retention(models, env, 6, baseline="warm_start", max_new_tokens=8)
    reset = evaluate(RxTAgent(models["mrl"], tokenizer(), max_new_tokens=8, write_memory=False), env, 6, seed=0)
    np.testing.assert_array_equal(result.reset_memory["mrl"].step_rewards, reset.step_rewards)
    with_memory = result.with_memory["mrl"].step_rewards
    assert not np.array_equal(with_memory, reset.step_rewards)  # the written conversation changes the answers
    gap = result.gap["mrl"].reward_difference.mean
    assert gap == pytest.approx(float((with_memory - reset.step_rewards).mean()))
    assert set(result.gain) == {"mrl", "copy"}  # the baseline has no gain over itself
    same = result.gain["copy"].reward_difference  # identical weights: exactly zero, zero-width interval
    assert (same.mean, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    summary = result.summary()
    assert summary["models"]["mrl"]["gain"]["reward"]["mean"] == pytest.approx(result.gain["mrl"].reward_difference.mean)
    assert "gain" not in summary["models"]["warm_start"]
    assert "retention" in result.format_table() and "mrl" in result.format_table()


@pytest.mark.parametrize("config, long_range", [("steps-16", False), ("steps-16-lr", True)])
def test_retention_env_plays_sixteen_step_episodes_of_either_strategy(config, long_range):
    env = retention_env(tokenizer(), config, num_episodes=2, batch_size=2)
    start = env.reset(seed=0)
    assert env.steps == 16 and env.teacher_forcing
    assert start.long_range.tolist() == [long_range] * 2
    assert [modes[-1] for modes in start.modes] == ["long_range" if long_range else "standard"] * 2


def test_retention_reports_the_final_recall_of_long_range_episodes_and_none_for_cumulative(episodes):
    models = {"warm_start": tiny_model(0), "mrl": tiny_model(1)}
    env = retention_env(tokenizer(), "steps-16-lr", num_episodes=2, batch_size=2)
    result = measure_retention(models, env, 2, baseline="warm_start", max_new_tokens=4)
    mrl = result.summary()["models"]["mrl"]
    final = result.with_memory["mrl"].episode_final_recall
    assert mrl["with_memory"]["final_recall"]["mean"] == pytest.approx(float(final.mean()))
    assert mrl["gap"]["final_recall"]["mean"] == pytest.approx(
        float((final - result.reset_memory["mrl"].episode_final_recall).mean()))
    assert mrl["gain"]["final_recall"] is not None
    assert "final recall: the long-range final question" in result.format_table()
    cumulative = measure_retention(models, env_of(episodes), 6, baseline="warm_start", max_new_tokens=4)
    row = cumulative.summary()["models"]["mrl"]
    assert row["with_memory"]["final_recall"] is None and row["gain"]["final_recall"] is None
    assert cumulative.format_table().endswith("final recall: none (cumulative episodes have no long-range final question)")
