"""The one cut of an episode to a stage (``rxmrl.envs.episodes.cut_to_steps``): what every env and trainer plays."""

from __future__ import annotations

import pytest

from rxmrl.data import Episode, Fact, Interaction, load_curriculum
from rxmrl.envs.episodes import cut_to_steps


def four_follow_ups(strategy: str) -> Episode:
    """Follow-up j is ``qj``; its fact cites interaction j (the one before it) and, for j = 3, also interaction 0."""
    interactions = [Interaction(f"q{j}", f"a{j}") for j in range(4)]
    facts = [[Fact(f"fact{j}", j)] for j in range(3)] + [[Fact("first", 0), Fact("third", 3)]]
    return Episode("q", "a", interactions, facts, strategy)


def test_a_cumulative_row_keeps_its_first_follow_ups_and_their_facts():
    cut = cut_to_steps(four_follow_ups("cumulative"), 2, long_range=False)
    assert [i.query for i in cut.interactions] == ["q0", "q1"]
    assert cut.facts == [[Fact("fact0", 0)], [Fact("fact1", 1)]]
    assert cut.strategy == "cumulative" and (cut.query, cut.answer) == ("q", "a")


def test_a_long_range_row_keeps_the_topic_switch_and_its_final_question():
    cut = cut_to_steps(four_follow_ups("long_range"), 3, long_range=True)
    assert [i.query for i in cut.interactions] == ["q0", "q1", "q3"]
    # the final question's fact about the first interaction stays; the one citing dropped q2's interaction goes
    assert cut.facts == [[Fact("fact0", 0)], [Fact("fact1", 1)], [Fact("first", 0)]]
    assert [i.query for i in cut_to_steps(four_follow_ups("long_range"), 2, True).interactions] == ["q0", "q3"]


def test_a_row_of_exactly_the_stage_is_played_as_it_is_and_a_shorter_one_is_refused():
    episode = four_follow_ups("long_range")
    assert cut_to_steps(episode, 4, long_range=True) is episode
    with pytest.raises(ValueError, match=r"^episode 7 of the batch has 4 follow-ups, needs 5$"):
        cut_to_steps(episode, 5, long_range=False, where="episode 7 of the batch")


def test_the_batched_env_and_the_trainer_play_a_long_range_row_the_same_cut():
    from rxmrl.envs import BatchedMrlEnv
    from rxmrl.training.mrl.rollout import stage_episodes

    row = load_curriculum("embedded", 4, "validation", long_range=True, num_episodes=1).episodes[0]
    env = BatchedMrlEnv(1, episodes=[row], steps=2, reward="default", similarity="random-embedding")
    env.reset(options={"episodes": [row]})
    played = env._episodes[0]
    assert played == cut_to_steps(row, 2, long_range=True)
    assert stage_episodes([row], [True], 2)[0].interactions == played.interactions
    assert played.interactions[-1] == row.interactions[-1]  # the question about the first interaction
