"""BatchedMrlEnv: the same rewards as B single envs, one reward call per step, clear errors."""

import numpy as np
import pytest
import torch

from env_helpers import RecordingReward, hand_made_long_range_episode
from rxmrl.data import default_tokenizer, load_curriculum
from rxmrl.envs import BatchedMrlEnv, MalformedActionError, MrlEnv, PaddedIds, concat_padded


@pytest.fixture(scope="module")
def episodes():
    cumulative = load_curriculum("embedded", config="steps-4", split="validation", num_episodes=3)
    long_range = load_curriculum("embedded", config="steps-4-lr", split="validation", num_episodes=2)
    return [*cumulative, *long_range]


def random_answers(batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [[[4, *rng.integers(7, 600, size=int(rng.integers(0, 25))).tolist(), 2] for _ in range(batch)]
            for _ in range(steps)]


@pytest.mark.parametrize("teacher_forcing,saved_data,reward", [
    (False, "conversation", "default"), (True, "conversation", "default"), (False, "as_written", "default"),
    (False, "conversation", "memory"), (False, "as_written", "memory")])
def test_batched_rewards_equal_single_env_rewards(episodes, teacher_forcing, saved_data, reward):
    answers = random_answers(len(episodes), 4)
    if reward == "memory":  # some answers that recall: the reference with its first half kept
        tokenizer = default_tokenizer()
        for i in range(4):
            answers[i][:2] = [tokenizer.encode_answer(e.interactions[i].answer)[:12] for e in episodes[:2]]
    settings = dict(similarity="random-embedding", teacher_forcing=teacher_forcing, saved_data=saved_data,
                    reward=reward)
    batched = BatchedMrlEnv(len(episodes), episodes=episodes, steps=4, **settings)
    batched.reset(options={"episodes": episodes})
    outs = [batched.step(PaddedIds.from_lists(answers[i])) for i in range(4)]
    assert [o.modes[-1] for o in outs] == ["negative", "standard", "standard", "long_range"]
    if reward == "memory":
        recalled = torch.stack([o.components["memory_recall"][:2] for o in outs])
        assert bool((recalled.nan_to_num(0) > 0).any())
    for b, episode in enumerate(episodes):
        single = MrlEnv(episodes=episodes, steps=4, mode="token", **settings)
        single.reset(options={"episode": episode})
        for i in range(4):
            _, reward, _, _, info = single.step(np.asarray(answers[i][b]))
            assert reward == pytest.approx(float(outs[i].rewards[b]), abs=1e-5)
            for name, value in info["reward_components"].items():
                assert value == pytest.approx(float(outs[i].components[name][b]), abs=1e-5, nan_ok=True)
            for name in ("fact_recall", "held_fact_recall"):  # None where the batch has NaN (no fact asked / held)
                value = float(getattr(outs[i], name)[b])
                assert info[name] == (None if np.isnan(value) else pytest.approx(value))
            assert list(info["write_to_memory_ids"]) == outs[i].write_to_memory.to_lists()[b]


def test_one_reward_call_per_step_with_per_row_modes_and_saved_data(episodes):
    reward = RecordingReward()
    env = BatchedMrlEnv(5, episodes=episodes, steps=4, reward=reward)
    start = env.reset(options={"episodes": episodes})
    answers = random_answers(5, 4)
    for i in range(4):
        out = env.step(PaddedIds.from_lists(answers[i]))
    assert len(reward.calls) == 4
    final = reward.calls[-1]
    assert final["modes"] == ["standard"] * 3 + ["long_range"] * 2
    saved = PaddedIds(final["saved"], final["saved_lengths"]).to_lists()
    assert saved[3] == start.saved_interaction.to_lists()[3]  # long-range: back to the first interaction
    assert saved[0] != start.saved_interaction.to_lists()[0]  # cumulative: the follow-up before
    assert out.done and out.next_query is None and bool(out.terminated.all())


def test_reset_returns_saved_interactions_and_first_queries_as_padded_ids(episodes):
    tokenizer = default_tokenizer()
    env = BatchedMrlEnv(2, steps=2, split="validation", num_episodes=4, similarity="random-embedding", seed=0)
    start = env.reset()
    assert start.saved_query.to_lists()[0] == tokenizer.encode_query(start.episodes[0].query)
    assert start.saved_answer.to_lists()[1] == tokenizer.encode_answer(start.episodes[1].answer)
    assert start.saved_interaction.to_lists()[0] == (tokenizer.encode_query(start.episodes[0].query)
                                                     + tokenizer.encode_answer(start.episodes[0].answer))
    assert start.query.to_lists()[1] == tokenizer.encode_query(start.episodes[1].interactions[0].query)
    again = BatchedMrlEnv(2, steps=2, split="validation", num_episodes=4, similarity="random-embedding", seed=0).reset()
    assert [e.query for e in again.episodes] == [e.query for e in start.episodes]


def test_concat_padded_joins_rows_of_different_lengths():
    first = PaddedIds.from_lists([[1, 2, 3], [4], []])
    second = PaddedIds.from_lists([[9], [8, 7, 6], [5, 5]])
    joined = concat_padded(first, second)
    assert joined.to_lists() == [[1, 2, 3, 9], [4, 8, 7, 6], [5, 5]]
    assert joined.ids.shape == (3, 4) and int(joined.ids[2, 2:].abs().sum()) == 0


def test_malformed_batched_answers_raise_and_the_step_can_be_retried(episodes):
    env = BatchedMrlEnv(5, episodes=episodes, steps=4, similarity="random-embedding", max_answer_tokens=50)
    env.reset(options={"episodes": episodes})
    good = PaddedIds.from_lists(random_answers(5, 1)[0])
    for bad in [torch.ones(4, 3, dtype=torch.long), torch.ones(5, 3), torch.ones(5, 3, dtype=torch.bool), PaddedIds(torch.full((5, 3), 10**6), torch.full((5,), 3)),
                PaddedIds(torch.ones(5, 60, dtype=torch.long), torch.full((5,), 60)), "text"]:
        with pytest.raises(MalformedActionError):
            env.step(bad)
    out = env.step(good)
    assert out.step == 0


def test_held_fact_recall_counts_only_facts_that_memory_was_given():
    """Follow-up 1 asks about a scene only the reference answer of follow-up 0 told: after the agent wrote its
    own answer the fact is not held (NaN), under teacher forcing it is, and an answer that states it scores 1."""
    from rxmrl.data import Episode, Fact, Interaction

    episode = Episode("Tell me a story.", "Lily had a red ball.",
                      [Interaction("What colour was the ball?", "It was red. Then Lily went to the lake."),
                       Interaction("Where did Lily go?", "She went to the lake.")],
                      [[Fact("red", 0)], [Fact("lake", 1)]], "cumulative")
    tokenizer = default_tokenizer()
    answers = [tokenizer.encode_answer("It was red."), tokenizer.encode_answer("She went to the lake.")]
    held = {}
    for teacher_forcing in (False, True):
        env = BatchedMrlEnv(1, episodes=[episode], steps=2, similarity="random-embedding",
                            teacher_forcing=teacher_forcing)
        env.reset(options={"episodes": [episode]})
        held[teacher_forcing] = [float(env.step(PaddedIds.from_lists([a])).held_fact_recall[0]) for a in answers]
    assert held[True] == [1.0, 1.0]
    assert held[False][0] == 1.0 and np.isnan(held[False][1])  # the agent never wrote "lake" into memory


@pytest.mark.parametrize("config", ["steps-16", "steps-16-lr"])
def test_sixteen_step_batches_play_to_the_end_with_the_final_recall_on_the_last_long_range_step(config):
    env = BatchedMrlEnv(2, "embedded", None, "validation", config=config, num_episodes=2,
                        similarity="random-embedding", order="sequential", seed=0)
    start = env.reset(seed=0)
    long_range = config.endswith("-lr")
    assert env.steps == 16 and [e.num_follow_ups for e in start.episodes] == [16, 16]
    assert start.long_range.tolist() == [long_range] * 2
    finals = []
    for step in range(16):
        out = env.step(env.current_references())
        assert out.done == (step == 15) and (out.next_query is None) == (step == 15)
        assert bool(((out.rewards >= 0) & (out.rewards <= 10)).all())
        finals.append(out.final_recall.tolist())
    assert np.isnan(finals[:15]).all()
    assert finals[15] == [1.0, 1.0] if long_range else np.isnan(finals[15]).all()


def test_final_recall_is_the_final_questions_recall_per_row_and_per_alternative():
    episodes = [hand_made_long_range_episode(3, tag) for tag in ("", "2")]
    tokenizer = default_tokenizer()
    env = BatchedMrlEnv(2, episodes=episodes, steps=3, similarity="random-embedding")
    env.reset(options={"episodes": episodes})
    for _ in range(2):
        assert bool(torch.isnan(env.step(env.current_references()).final_recall).all())
    states, forgets = (tokenizer.encode_answer(t) for t in ("Tom's kite was red.", "I forgot what the kite was like."))
    group = env.score_alternatives(PaddedIds.from_lists([states, forgets, forgets, states]), group_size=2)
    assert group.final_recall.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert env.step(PaddedIds.from_lists([states, forgets])).final_recall.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("reward", ["default", "memory"])
def test_text_rows_score_as_single_text_envs_do(episodes, reward):
    """``MrlEnv`` is a one-episode view of the batched env; B text rows at once (long-range rows without a
    running mean beside cumulative ones with one) score as B text envs one at a time."""
    n = len(episodes)  # each row answers with another episode's answer, but row 0 of step 2 recalls
    texts = [[episodes[(b + 1) % n].interactions[i].answer for b in range(n)] for i in range(4)]
    texts[2][0] = episodes[0].interactions[2].answer
    settings = dict(similarity="random-embedding", reward=reward)
    batched = BatchedMrlEnv(len(episodes), episodes=episodes, steps=4, mode="text", **settings)
    batched.reset(options={"episodes": episodes})
    with pytest.raises(MalformedActionError):
        batched.step([1, 2, 3, 4, 5])  # ids where text rows are expected; the step can be retried
    outs = [batched.step(texts[i]) for i in range(4)]
    for b, episode in enumerate(episodes):
        single = MrlEnv(episodes=episodes, steps=4, mode="text", **settings)
        single.reset(options={"episode": episode})
        rewards = [single.step(texts[i][b])[1] for i in range(4)]
        assert rewards == pytest.approx([float(o.rewards[b]) for o in outs], abs=1e-5)
    assert float(outs[2].rewards[0]) > float(outs[2].rewards[1:3].max())
