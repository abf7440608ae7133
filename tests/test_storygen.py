"""The embedded generator: deterministic, every config, disjoint splits, facts stated where they point."""

import re

import pytest

from rxmrl.data import EMBEDDED_CONFIGS, generate_episodes, load_curriculum, parse_config, validate_rows
from rxmrl.data.storygen import generate_stories, split_of


def _has(text, phrase):
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", text.lower()) is not None


def test_same_seed_same_episodes_other_seed_other_episodes():
    assert generate_episodes("steps-4", "train", 50, seed=3) == generate_episodes("steps-4", "train", 50, seed=3)
    assert generate_episodes("steps-4", "train", 50, seed=3) != generate_episodes("steps-4", "train", 50, seed=4)
    assert generate_episodes("steps-4", "train", 20) == generate_episodes("steps-4", "train", 50)[:20]


@pytest.mark.parametrize("config", EMBEDDED_CONFIGS + ("steps-1", "steps-1-lr", "steps-3-lr", "steps-64", "steps-64-lr"))
def test_every_config_has_the_right_shape_and_passes_validation(config):
    steps, long_range = parse_config(config)
    episodes = generate_episodes(config, "train", 40)
    assert len({(e.query, e.answer, tuple(e.interactions)) for e in episodes}) == 40
    assert all(e.num_follow_ups == steps and len(e.facts) == steps for e in episodes)
    assert {e.strategy for e in episodes} == {"long_range" if long_range else "cumulative"}
    assert validate_rows([e.to_row() for e in episodes], config, "train") is not None  # facts checked too


@pytest.mark.parametrize("config", ["steps-2", "steps-8", "steps-8-lr", "steps-32"])
def test_facts_are_stated_in_their_interaction_and_the_reference_answer(config):
    for episode in generate_episodes(config, "validation", 60):
        texts = [f"{i.query} {i.answer}" for i in episode.all_interactions()]
        for j, (follow_up, facts) in enumerate(zip(episode.interactions, episode.facts)):
            for fact in facts:
                assert 0 <= fact.source <= j
                assert _has(follow_up.answer, fact.text), (config, j, fact)
                assert _has(episode.all_interactions()[fact.source].answer, fact.text), (config, j, fact)
                assert not _has(follow_up.query, fact.text), "the question must not give the answer away"
            assert texts  # every follow-up was checked


def test_cumulative_follow_up_builds_on_the_interaction_just_before_it():
    for episode in generate_episodes("steps-8", "train", 50):
        assert all(any(f.source == j for f in facts) for j, facts in enumerate(episode.facts))


def test_long_range_switches_topic_then_asks_about_the_first_interaction():
    for episode in generate_episodes("steps-8-lr", "train", 50):
        assert episode.facts[0] == []
        assert all(f.source >= 1 for facts in episode.facts[1:-1] for f in facts)
        assert episode.facts[-1] and all(f.source == 0 for f in episode.facts[-1])
        saved_child = episode.answer.split("named ")[1].split(".")[0]
        assert saved_child not in " ".join(i.answer for i in episode.interactions[:-1])


@pytest.mark.parametrize("config", ["steps-2", "steps-8-lr"])
def test_train_and_validation_never_share_a_saved_interaction(config):
    splits = {split: generate_episodes(config, split, 400 if split == "train" else 100)
              for split in ("train", "validation", "supervised")}
    keys = {split: {f"{e.query}\n{e.answer}" for e in eps} for split, eps in splits.items()}
    assert all(split_of(key) == split for split, split_keys in keys.items() for key in split_keys)
    assert not keys["train"] & keys["validation"]
    assert not keys["supervised"] & (keys["train"] | keys["validation"])


def test_thousands_of_distinct_episodes_are_fast():
    import time

    start = time.perf_counter()
    episodes = load_curriculum(steps=8, num_episodes=2000).episodes
    assert len({(e.query, e.answer, tuple(e.interactions)) for e in episodes}) == 2000
    assert time.perf_counter() - start < 5.0


def test_stories_use_the_same_world_and_respect_splits():
    train, validation = generate_stories("train", 100), generate_stories("validation", 30)
    assert not set(train) & set(validation)
    assert all(story.startswith("Once upon a time, there was a little") for story in train)
