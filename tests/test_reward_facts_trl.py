"""Fact recall and the TRL reward-function adapter."""

import inspect
import math

import pytest
import torch

from rxmrl.rewards import (
    MemoryRetentionReward,
    TokenEmbeddingSimilarity,
    as_trl_fact_recall,
    as_trl_reward,
    completion_text,
    fact_recall,
    mix_fact_recall,
)


@pytest.mark.parametrize(
    "answer, facts, expected",
    [
        ("Tom flies a RED kite.", ["red kite", "Tom"], 1.0),
        ("Tom flies a red   kite.", ["red kite"], 1.0),  # any whitespace inside a phrase
        ("They concatenate strings.", ["cat"], 0.0),  # whole words only
        ("The cat sat.", ["cat", "dog"], 0.5),
        ("Anything at all.", [], 1.0),  # nothing to recall
        ("Mia's dog is called Rex.", ["Mia's dog", "rex"], 1.0),
        ("The (big) box.", ["(big)"], 1.0),  # punctuation in a fact is literal
        ("", ["kite"], 0.0),
    ],
)
def test_fact_recall_counts_whole_word_case_insensitive_matches(answer, facts, expected):
    assert fact_recall(answer, facts) == pytest.approx(expected)


@pytest.fixture(scope="module")
def trl_reward():
    # text path: BLEU on words, cosine on a frozen token embedding through a toy character tokenizer
    encode = lambda text: [min(ord(c), 999) for c in text]  # noqa: E731
    torch.manual_seed(0)
    backend = TokenEmbeddingSimilarity(torch.randn(1000, 16), encode=encode)
    return as_trl_reward(MemoryRetentionReward("default", backend))


def test_trl_adapter_has_trls_signature_and_a_loggable_name(trl_reward):
    params = inspect.signature(trl_reward).parameters
    assert list(params)[:2] == ["prompts", "completions"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert trl_reward.__name__ == "memory_retention"


def test_trl_adapter_returns_floats_in_range_for_plain_and_conversational_completions(trl_reward):
    logged = {}
    plain = trl_reward(
        prompts=["q1", "q2", "q3"],
        completions=["Tom flies a red kite.", "", "ünïcödé 🚀"],
        completion_ids=[[1], [2], [3]],
        reference=["Tom flies a red kite."] * 3,
        saved=["Tom has a red kite."] * 3,
        mode=["standard", "negative", "long_range"],
        trainer_state=None,
        log_metric=lambda name, value: logged.setdefault(name, value),
    )
    assert all(isinstance(r, float) and 0.0 <= r <= 10.0 for r in plain)
    assert plain[0] > plain[1]
    assert "memory_retention/bleu_reference" in logged
    conversational = trl_reward(
        prompts=[[{"role": "user", "content": "q1"}]],
        completions=[[{"role": "assistant", "content": "Tom flies a red kite."}]],
        reference=["Tom flies a red kite."],
        saved=["Tom has a red kite."],
    )
    assert conversational[0] == pytest.approx(plain[0], abs=1e-5)


def test_trl_adapter_names_a_missing_column(trl_reward):
    with pytest.raises(KeyError, match="'saved'"):
        trl_reward(prompts=["q"], completions=["a"], reference=["a"])


def test_trl_fact_recall_adapter():
    func = as_trl_fact_recall()
    assert func.__name__ == "fact_recall"
    assert func(prompts=["q", "q"], completions=["a red kite", "nothing"], facts=[["red kite"], ["kite"]]) == [1.0, 0.0]


def test_completion_text_rejects_unknown_shapes():
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    with pytest.raises(TypeError, match="completion must be a string"):
        completion_text(42)


def test_mix_fact_recall_pays_a_share_for_recall_and_leaves_steps_without_facts_alone():
    reward = torch.tensor([4.0, 4.0, 6.0])
    recall = torch.tensor([1.0, 0.0, float("nan")])
    mixed = mix_fact_recall(reward, recall, 0.25, 10.0)
    assert torch.allclose(mixed, torch.tensor([0.75 * 4 + 2.5, 0.75 * 4, 6.0]))
    assert mix_fact_recall(reward, recall, 0.0, 10.0) is reward
    with pytest.raises(ValueError, match="share in"):
        mix_fact_recall(reward, recall, 1.5, 10.0)


def test_held_fact_recall_ignores_facts_their_source_interaction_never_stated():
    from rxmrl.data.schema import Fact
    from rxmrl.rewards import held_fact_recall

    written = ["Lily had a red ball.", "It was red. Then she sang a song."]  # interaction 1 never says "lake"
    facts = [Fact("red", 0), Fact("lake", 1)]
    assert held_fact_recall("The ball was red, by the lake.", facts, written) == 1.0  # only "red" counts
    assert held_fact_recall("The ball was blue.", facts, written) == 0.0
    assert math.isnan(held_fact_recall("red", [Fact("lake", 1)], written))  # nothing held: undefined, not 0
    assert held_fact_recall("red lake", facts, [*written[:1], "They went to the lake."]) == 1.0
