"""MrlEnv: Gymnasium contract, which saved data / mode / running mean scores each step, errors, seeding."""

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from env_helpers import RecordingReward, expected_running_means, hand_made_episode, hand_made_long_range_episode
from rxmrl.data import Episode, Interaction, default_tokenizer
from rxmrl.envs import MalformedActionError, MrlEnv, PaddedIds, step_plan


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def small_env(**kwargs) -> MrlEnv:
    defaults = dict(steps=2, split="validation", num_episodes=6, similarity="random-embedding")
    return MrlEnv(**{**defaults, **kwargs})


@pytest.mark.parametrize("mode", ["text", "token"])
def test_env_passes_gymnasium_check_env(mode):
    check_env(small_env(mode=mode), skip_render_check=True)


@pytest.mark.parametrize("strategy", ["cumulative", "long_range"])
def test_env_passes_check_env_for_each_strategy(strategy):
    check_env(small_env(strategy=strategy, mode="text"), skip_render_check=True)


def test_plan_table_for_cumulative_and_long_range():
    cumulative = step_plan(4, long_range=False)
    assert [s.mode for s in cumulative] == ["standard"] * 4
    assert [s.saved_index for s in cumulative] == [0, 1, 2, 3]
    assert [s.running_mean_update for s in cumulative] == [None, 0, 1, 2]
    long_range = step_plan(4, long_range=True)
    assert [s.mode for s in long_range] == ["negative", "standard", "standard", "long_range"]
    assert [s.saved_index for s in long_range] == [0, 1, 2, 0]
    assert [s.running_mean_update for s in long_range] == [None, None, 1, 2]  # the mean starts after the switch
    assert [s.running_mean_update for s in step_plan(2, long_range=True)] == [None, None]
    with pytest.raises(ValueError, match="at least 2 steps"):
        step_plan(1, long_range=True)


def play(env, episode, answers, teacher_forcing=False):
    env.reset(options={"episode": episode, "teacher_forcing": teacher_forcing})
    return [env.step(a)[4] for a in answers]


@pytest.mark.parametrize("strategy", ["cumulative", "long_range"])
@pytest.mark.parametrize("teacher_forcing", [False, True])
@pytest.mark.parametrize("saved_data", ["conversation", "as_written"])
def test_each_step_is_scored_against_the_right_saved_data_mode_and_running_mean(strategy, teacher_forcing,
                                                                                 saved_data):
    reward = RecordingReward()
    episode = hand_made_episode(4, strategy)
    env = MrlEnv(episodes=[episode], steps=4, reward=reward, mode="text", saved_data=saved_data)
    answers = [f"my own answer {k}" for k in range(4)]
    infos = play(env, episode, answers, teacher_forcing)

    written = [answers[k] if not teacher_forcing else episode.interactions[k].answer for k in range(4)]
    scored = written if saved_data == "as_written" else [f.answer for f in episode.interactions]
    interactions = [f"{episode.query} {episode.answer}"] + [
        f"{f.query} {w}" for f, w in zip(episode.interactions, scored)]
    long_range = strategy == "long_range"
    expected_saved = [interactions[0], interactions[1], interactions[2], interactions[0] if long_range else interactions[3]]
    expected_modes = ["negative", "standard", "standard", "long_range"] if long_range else ["standard"] * 4
    folded = range(1, 3) if long_range else range(3)  # long range: not the first interaction (plan.py)
    means = expected_running_means([reward.embed_texts([interactions[k]]) for k in folded])
    if long_range:
        means = [None, *means]

    for step, (call, info) in enumerate(zip(reward.calls, infos)):
        assert call["saved"] == [expected_saved[step]] and info["saved_data"] == expected_saved[step]
        assert call["modes"] == [expected_modes[step]] and info["mode"] == expected_modes[step]
        assert call["reference"] == [episode.interactions[step].answer] == [info["reference"]]
        assert info["running_mean_of"] == tuple(range(1 if long_range else 0, step))
        if means[step] is None:
            assert call["running_mean"] is None
        else:
            torch.testing.assert_close(call["running_mean"], means[step])
        assert info["write_to_memory"] == written[step]
        assert info["teacher_forcing"] is teacher_forcing


@pytest.mark.parametrize("saved_data", ["conversation", "as_written"])
def test_token_mode_scores_ids_of_the_interaction_the_setting_names(tokenizer, saved_data):
    reward = RecordingReward()
    episode = hand_made_episode(3)
    env = MrlEnv(episodes=[episode], steps=3, reward=reward, mode="token", saved_data=saved_data)
    answers = [np.asarray(tokenizer.encode_answer(f"answer {k}"), np.int64) for k in range(3)]
    infos = play(env, episode, answers)
    first = tokenizer.encode_query(episode.query) + tokenizer.encode_answer(episode.answer)
    own = answers[0].tolist() if saved_data == "as_written" else tokenizer.encode_answer(episode.interactions[0].answer)
    follow_up_0 = tokenizer.encode_query(episode.interactions[0].query) + own
    rows = lambda call, name: PaddedIds(call[name], call[f"{name}_lengths"]).to_lists()  # noqa: E731
    assert rows(reward.calls[0], "saved") == [first]
    assert rows(reward.calls[1], "saved") == [follow_up_0]
    assert list(infos[0]["write_to_memory_ids"]) == answers[0].tolist()  # memory gets the agent's answer
    assert rows(reward.calls[1], "reference") == [tokenizer.encode_answer(episode.interactions[1].answer)]
    assert rows(reward.calls[2], "generated") == [answers[2].tolist()]


def test_info_reports_facts_recall_components_and_reference():
    episode = hand_made_episode(2)
    env = MrlEnv(episodes=[episode], steps=2, similarity="random-embedding")
    env.reset(options={"episode": episode})
    _, reward, terminated, truncated, info = env.step("The kite was red, I remember.")
    assert info["facts"] == ["red"] and info["fact_recall"] == 1.0
    assert {"bleu_reference", "bleu_saved", "cosine_reference", "cosine_saved", "length"} <= set(info["reward_components"])
    assert info["step"] == 0 and not terminated and not truncated and 0 <= reward <= 10
    _, _, terminated, _, info = env.step("No idea.")
    assert info["fact_recall"] == 0.0 and terminated and info["step"] == 1


def test_reference_answer_outscores_an_unrelated_answer_in_the_env():
    episode = hand_made_episode(2)
    env = MrlEnv(episodes=[episode], steps=2, similarity="random-embedding")
    reference = play(env, episode, [i.answer for i in episode.interactions])
    unrelated = play(env, episode, ["Bananas grow on tall green plants far away."] * 2)
    for good, bad in zip(reference, unrelated):
        assert good["reward_components"]["bleu_reference"] == pytest.approx(1.0)
        assert bad["reward_components"]["bleu_reference"] < 0.2


@pytest.mark.parametrize("mode,bad_actions", [
    ("text", [42, b"bytes", "x" * 5000, "bad\x00char"]),
    ("token", ["text", np.array([1.5, 2.0]), np.zeros((2, 2), np.int64), np.array([-1, 5]),
               np.array([10**6]), np.arange(8, 2000) % 100, [1, "2"]]),
])
def test_malformed_actions_raise_and_leave_the_episode_unchanged(mode, bad_actions, tokenizer):
    episode = hand_made_episode(2)
    env = MrlEnv(episodes=[episode], steps=2, similarity="random-embedding", mode=mode, max_answer_chars=4096,
                 max_answer_tokens=1000)
    good = episode.interactions[0].answer
    good = good if mode == "text" else np.asarray(tokenizer.encode_answer(good), np.int64)
    clean = play(env, episode, [good])[0]
    env.reset(options={"episode": episode})
    for bad in bad_actions:
        with pytest.raises(MalformedActionError):
            env.step(bad)
    retried = env.step(good)[4]
    assert retried["step"] == 0 and retried["reward_components"] == clean["reward_components"]


def test_step_before_reset_and_after_the_end_are_errors():
    env = small_env()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("hello")
    env.reset(seed=0)
    env.step("a")
    env.step("b")
    with pytest.raises(RuntimeError, match="ended after 2 steps"):
        env.step("c")


def test_seeded_resets_replay_the_same_episodes_and_seeds_differ():
    def episodes(seed, count=5):
        env = small_env()
        first = env.reset(seed=seed)[0]["saved_answer"]
        return [first] + [env.reset()[0]["saved_answer"] for _ in range(count - 1)]

    assert episodes(1) == episodes(1)
    assert episodes(1) != episodes(2)
    assert len(set(episodes(1, 6))) == 6  # one pass visits every episode once


def test_sequential_order_plays_rows_in_order():
    env = small_env(order="sequential")
    indices = [env.reset(seed=s)[1]["episode_index"] for s in (5, None, None)]
    assert indices == [0, 1, 2]


def test_mixed_strategy_draws_long_range_episodes_at_the_given_ratio():
    def long_range_share(ratio, seed=0, count=40):
        env = small_env(strategy="mixed", long_range_ratio=ratio)
        flags = [env.reset(seed=seed if i == 0 else None)[1]["long_range"] for i in range(count)]
        return sum(flags) / count

    assert long_range_share(0.0) == 0.0 and long_range_share(1.0) == 1.0
    assert 0.25 < long_range_share(0.5) < 0.75
    assert long_range_share(0.5, seed=3) == long_range_share(0.5, seed=3)


def test_stage_uses_the_first_steps_follow_ups_of_longer_rows():
    env = MrlEnv(steps=2, config="steps-4", split="validation", num_episodes=3, similarity="random-embedding")
    _, info = env.reset(seed=0)
    assert info["episode"].num_follow_ups == 2 and info["steps"] == 2
    with pytest.raises(ValueError, match="only 4 follow-ups"):
        MrlEnv(steps=6, config="steps-4", split="validation", num_episodes=3, similarity="random-embedding")


def test_a_long_range_row_plays_a_shorter_stage_with_its_final_question():
    long_row = hand_made_episode(4, "long_range")
    env = MrlEnv(episodes=[long_row], steps=3, strategy="long_range", similarity="random-embedding")
    _, info = env.reset(seed=0)
    queries = [i.query for i in info["episode"].interactions]
    assert queries == [long_row.interactions[j].query for j in (0, 1, 3)] and info["modes"][-1] == "long_range"


def test_text_space_accepts_natural_unicode_text_and_empty_answers():
    env = MrlEnv(episodes=[Episode("Wie heißt du?", "Ich heiße Zoë — «merci»!", [Interaction("¿Qué?", "Ñandú 🐦.")])],
                 steps=1, similarity="random-embedding")
    observation, _ = env.reset(seed=0)
    assert observation in env.observation_space
    assert "" in env.action_space and "Zoë said: «ok»\n" in env.action_space
    _, reward, terminated, _, _ = env.step("")
    assert terminated and 0 <= reward <= 10


def test_any_reward_callable_can_score_the_env():
    def answer_length_reward(generated, reference, saved, **kwargs):
        assert kwargs["running_mean"] is None  # no embed_* methods: no running mean
        return torch.tensor([float(len(g)) for g in generated])

    episode = hand_made_episode(2)
    env = MrlEnv(episodes=[episode], steps=2, reward=answer_length_reward)
    env.reset(options={"episode": episode})
    assert env.step("four")[1] == 4.0
    assert env.step("")[1] == 0.0


@pytest.mark.parametrize("mode", ["text", "token"])
@pytest.mark.parametrize("env_id, long_range", [("rxmrl/TinyStoriesMRL-Steps16-v0", False),
                                                ("rxmrl/TinyStoriesMRL-LongRange-Steps16-v0", True)])
def test_sixteen_step_episodes_play_through_gymnasium_with_the_final_recall_on_the_last_long_range_step(
        mode, env_id, long_range):
    env = gymnasium.make(env_id, mode=mode, split="validation", num_episodes=2, similarity="random-embedding")
    check_env(env.unwrapped, skip_render_check=True)
    _, info = env.reset(seed=0)
    episode, tokenizer = info["episode"], env.unwrapped.tokenizer
    assert info["steps"] == 16 and episode.num_follow_ups == 16 and info["long_range"] == long_range
    finals = []
    for step, follow_up in enumerate(episode.interactions):  # the oracle: every reference answer
        answer = follow_up.answer if mode == "text" else np.asarray(tokenizer.encode_answer(follow_up.answer))
        _, _, terminated, truncated, info = env.step(answer)
        assert terminated == (step == 15) and not truncated
        finals.append(info["final_recall"])
    assert finals == [None] * 15 + [1.0 if long_range else None]


def test_final_recall_scores_only_the_final_question_about_the_first_interaction():
    episode = hand_made_long_range_episode(3)
    env = MrlEnv(episodes=[episode], steps=3, similarity="random-embedding")
    for final_answer, expected in (("Tom's kite was red.", 1.0), ("I forgot what the kite was like.", 0.0)):
        env.reset(options={"episode": episode})
        infos = [env.step(answer)[4] for answer in ("Mia had a blue cup.", "It was blue.", final_answer)]
        assert [info["final_recall"] for info in infos] == [None, None, expected]
        assert infos[1]["fact_recall"] == 1.0 and infos[2]["fact_recall"] == expected
    cumulative = hand_made_episode(3)
    env = MrlEnv(episodes=[cumulative], steps=3, similarity="random-embedding")
    env.reset(options={"episode": cumulative})
    assert [env.step("The kite was red.")[4]["final_recall"] for _ in range(3)] == [None] * 3
