"""Gymnasium registration: ``gymnasium.make`` and ``make_vec`` after ``import rxmrl``."""

import gymnasium
import pytest
import numpy as np

import rxmrl  # noqa: F401  (registers the ids)
from rxmrl.envs import registered_ids


def test_ids_are_registered_on_import():
    for env_id in ("rxmrl/TinyStoriesMRL-v0", "rxmrl/TinyStoriesMRL-LongRange-v0", "rxmrl/TinyStoriesMRL-Steps4-v0",
                   "rxmrl/TinyStoriesMRL-LongRange-Steps16-v0"):
        assert env_id in gymnasium.registry and env_id in registered_ids()


def test_make_long_range_variant_plays_a_negative_first_and_a_long_range_last_step():
    env = gymnasium.make("rxmrl/TinyStoriesMRL-LongRange-Steps2-v0", split="validation", num_episodes=3,
                         similarity="random-embedding")
    _, info = env.reset(seed=0)
    assert info["modes"] == ["negative", "long_range"]
    _, _, terminated, _, step_info = env.step("I do not know.")
    assert step_info["mode"] == "negative" and not terminated


def test_make_vec_steps_text_envs_in_sync():
    envs = gymnasium.make_vec("rxmrl/TinyStoriesMRL-Steps2-v0", num_envs=2, vectorization_mode="sync",
                              split="validation", num_episodes=4, similarity="random-embedding")
    observations, _ = envs.reset(seed=0)
    assert len(observations["query"]) == 2 and all(isinstance(q, str) for q in observations["query"])
    _, rewards, terminated, _, _ = envs.step(("an answer", "another answer"))
    assert rewards.shape == (2,) and np.all((rewards >= 0) & (rewards <= 10)) and not terminated.any()
    envs.close()


def test_ansi_render_shows_the_saved_interaction_then_the_last_step():
    env = gymnasium.make("rxmrl/TinyStoriesMRL-Steps2-v0", split="validation", num_episodes=2, similarity="random-embedding",
                         render_mode="ansi")
    _, info = env.reset(seed=0)
    assert info["episode"].answer in env.render()
    env.step("my answer")
    assert "my answer" in env.render() and "step 0" in env.render()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_plays_whole_token_mode_episodes_with_four_envs(mode):
    """Variable-length ids in observations and infos: async needs shared_memory=False, and spawned workers (a
    forked copy of this torch-using process can hang; see MrlEnv's manual)."""
    vector_kwargs = {"shared_memory": False, "context": "spawn"} if mode == "async" else {}
    envs = gymnasium.make_vec("rxmrl/TinyStoriesMRL-Steps2-v0", num_envs=4, vectorization_mode=mode,
                              vector_kwargs=vector_kwargs, mode="token", split="validation", num_episodes=8,
                              similarity="random-embedding")
    try:
        observations, _ = envs.reset(seed=0)
        assert len(observations["query"]) == 4 and all(q.dtype == np.int64 for q in observations["query"])
        for step in range(2):
            answers = tuple(np.array([7 + i] * (i + 1), dtype=np.int64) for i in range(4))  # four lengths
            observations, rewards, terminated, _, info = envs.step(answers)
            assert rewards.shape == (4,) and np.all((rewards >= 0) & (rewards <= 10))
            assert terminated.all() == (step == 1)
            assert info["_write_to_memory_ids"].all()
            assert [list(ids) for ids in info["write_to_memory_ids"]] == [a.tolist() for a in answers]
    finally:
        envs.close()
