"""The demo (the README's main job until the full pipeline lands) runs offline, one event per turn."""

import io

import torch

from rxmrl.demo import converse, load_model_and_tokenizer
from rxmrl.model import SamplingConfig


def test_scripted_demo_answers_each_query_then_updates_memory(tmp_path, capsys):
    from rxmrl.cli import main

    assert main(["demo", "--scripted", "--turns", "2", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count("you> ") == 2
    assert out.count("[memory updated]") == 2
    assert "saved interaction" in out and "turn  answer ms" in out


def test_each_turn_changes_the_memory_the_next_turn_reads():
    model, tokenizer, fresh = load_model_and_tokenizer(None, "nano", seed=0)
    assert fresh
    model.reset_stm(1)
    before = model.export_stm().clone()
    turns = converse(model, tokenizer, iter(["Where was Lily's house?", "What colour was it?"]),
                     SamplingConfig(), max_new_tokens=6, seed=0, out=io.StringIO())
    assert [t.query for t in turns] == ["Where was Lily's house?", "What colour was it?"]
    assert not torch.equal(before, model.export_stm())
    assert all(t.answer_seconds > 0 and t.memory_seconds > 0 for t in turns)


def test_a_checkpoint_directory_without_a_config_is_refused_by_name(tmp_path):
    import pytest

    from rxmrl.model.folder import ModelFolderError

    with pytest.raises(ModelFolderError, match="config.json is missing"):
        load_model_and_tokenizer(tmp_path, "nano", seed=0)
