"""Curriculum rows are validated with errors that say which row, which field and what was expected."""

import pytest

from rxmrl.data import CurriculumValidationError, Episode, Fact, Interaction, parse_config, validate_rows
from rxmrl.data.curriculum import load_curriculum


def _row(follow_ups=2, **overrides):
    row = {
        "query": "Tell me about Lily.",
        "answer": "Lily had a red ball.",
        "interactions": [{"answer": f"Answer {k} about red.", "query": f"Question {k}?"} for k in range(follow_ups)],
    }
    row.update(overrides)
    return row


def _error(rows, config="steps-2", split="train"):
    with pytest.raises(CurriculumValidationError) as caught:
        validate_rows(rows, config, split, "test.jsonl")
    return str(caught.value)


def test_valid_row_becomes_an_episode_without_facts():
    (episode,) = validate_rows([_row()], "steps-2", "train")
    assert episode == Episode("Tell me about Lily.", "Lily had a red ball.",
                              [Interaction("Question 0?", "Answer 0 about red."),
                               Interaction("Question 1?", "Answer 1 about red.")], None, None)


def test_too_few_follow_ups_names_the_episode_config_and_split():
    message = _error([_row(), _row(), _row(follow_ups=1)], config="steps-2", split="validation")
    assert message.startswith("episode 2 of steps-2/validation (test.jsonl) has 1 follow-ups, needs 2")


def test_missing_field_is_named():
    row = _row()
    del row["answer"]
    assert "episode 0 of steps-2/train (test.jsonl) is missing field 'answer'" in _error([row])


def test_missing_interactions_field_is_named():
    row = _row()
    del row["interactions"]
    assert "is missing field 'interactions'" in _error([row])


def test_wrong_type_names_field_and_expected_type():
    message = _error([_row(query=42)])
    assert "field 'query' is int 42, expected a string" in message


def test_wrong_type_inside_follow_up_is_named_with_its_index():
    row = _row()
    row["interactions"][1]["answer"] = None
    assert "field 'interactions[1].answer' is NoneType" in _error([row])


def test_empty_text_is_rejected():
    row = _row()
    row["interactions"][0]["query"] = "   "
    assert "field 'interactions[0].query' is empty, expected non-empty text" in _error([row])


def test_unknown_config_and_split_are_rejected():
    with pytest.raises(CurriculumValidationError, match="unknown config 'step-4'.*steps-N"):
        parse_config("step-4")
    with pytest.raises(CurriculumValidationError, match="unknown config 'steps-0'"):
        load_curriculum(config="steps-0")
    with pytest.raises(CurriculumValidationError, match="unknown split 'test'.*train, validation, supervised"):
        load_curriculum(steps=2, split="test")


def test_facts_must_be_stated_where_they_point():
    good = _row(facts=[[{"text": "red", "source": 0}], [{"text": "red", "source": 1}]])
    (episode,) = validate_rows([good], "steps-2", "train")
    assert episode.facts == [[Fact("red", 0)], [Fact("red", 1)]]
    missing = _row(facts=[[{"text": "blue", "source": 0}], []])
    assert "fact 'blue' of 'facts[0]' is not in the answer of follow-up 0" in _error([missing])
    future = _row(facts=[[{"text": "red", "source": 2}], []])
    assert "'facts[0]' has source 2, expected an interaction index in 0..0" in _error([future])
    short = _row(facts=[[]])
    assert "field 'facts' has 1 entries, expected one list per follow-up (2)" in _error([short])


def test_unknown_strategy_is_rejected():
    assert "field 'strategy' is 'random'" in _error([_row(strategy="random")])
