"""``rxmrl data generate`` writes a curriculum that ``rxmrl data inspect`` and load_curriculum read back."""

import pytest

from rxmrl.cli import main
from rxmrl.data import load_curriculum, load_interactions, load_stories


def test_generate_then_inspect_a_small_curriculum(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RXMRL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "curriculum"
    assert main(["data", "generate", "--out", str(out), "--configs", "steps-2", "steps-6", "steps-4-lr",
                 "--num-train", "30", "--num-validation", "10", "--num-supervised", "12",
                 "--num-interactions", "40", "--num-stories", "20"]) == 0
    assert sorted(p.name for p in (out / "steps-6").iterdir()) == ["supervised.parquet", "train.parquet",
                                                                   "validation.parquet"]
    assert "config_name: steps-4-lr" in (out / "README.md").read_text()
    assert not (out / "INCOMPLETE").exists()
    assert load_curriculum(out, config="steps-4-lr", split="validation").episodes == load_curriculum(
        config="steps-4-lr", split="validation", num_episodes=10).episodes
    assert len(load_curriculum(out, steps=6, split="supervised")) == 12
    import datasets  # the dataset card's YAML makes the folder a datasets repo too

    assert datasets.load_dataset(str(out), "steps-6", split="supervised").num_rows == 12
    assert len(load_interactions(out / "sft")) == 40 and len(load_stories(out / "stories", "validation")) == 2
    capsys.readouterr()

    assert main(["data", "inspect", str(out), "--max-length", "32"]) == 0
    printed = capsys.readouterr().out
    lines = {tuple(line.split()[:3]) for line in printed.splitlines()}
    assert {("steps-2", "train", "30"), ("steps-6", "validation", "10"), ("steps-4-lr", "train", "30")} <= lines
    assert "sample episode (steps-2/train" in printed and "facts:" in printed


def test_a_killed_generate_leaves_a_marked_dataset_that_readers_refuse(tmp_path, capsys, monkeypatch):
    """Issue 35, defect 15: a killed `data generate` left plausible parquet files with no card and no mark."""
    from rxmrl.data import CurriculumValidationError, storygen

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(storygen, "generate_interactions", killed)  # after the episodes, before the card
    out = tmp_path / "curriculum"
    with pytest.raises(KeyboardInterrupt):
        main(["data", "generate", "--out", str(out), "--configs", "steps-2", "--num-train", "6",
              "--num-validation", "4"])
    assert (out / "steps-2" / "train.parquet").is_file() and not (out / "README.md").exists()
    assert (out / "INCOMPLETE").is_file()
    message = (f"{out} is an incomplete dataset (its INCOMPLETE file says `rxmrl data generate` did not finish): "
               "run that command again")
    for source in (out, out / "steps-2" / "train.parquet"):
        with pytest.raises(CurriculumValidationError) as refused:
            load_curriculum(source, config="steps-2")
        assert str(refused.value) == message
    capsys.readouterr()
    assert main(["data", "inspect", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    monkeypatch.undo()
    assert main(["data", "generate", "--out", str(out), "--configs", "steps-2", "--num-train", "6",
                 "--num-validation", "4", "--num-interactions", "4", "--num-stories", "4"]) == 0
    assert len(load_curriculum(out, config="steps-2")) == 6 and not (out / "INCOMPLETE").exists()


def test_tokenizer_train_command_writes_a_loadable_tokenizer(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Lily had a red ball.\nTom saw a big dog.\n" * 20)
    assert main(["tokenizer", "train", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "300"]) == 0
    from rxmrl.tokenizer import RxTokenizer

    tokenizer = RxTokenizer.load(tmp_path / "tok")
    assert tokenizer.decode(tokenizer.encode("Lily had a red ball.")) == "Lily had a red ball."
    assert "vocab" in capsys.readouterr().out


def test_inspect_reports_a_bad_source_in_one_line(tmp_path, capsys):
    (tmp_path / "rows.jsonl").write_text('{"query": "Hi", "answer": "Yo", "interactions": []}\n')
    assert main(["data", "inspect", str(tmp_path / "rows.jsonl")]) == 2
    assert "say which config it holds with --config steps-N" in capsys.readouterr().err


GOOD_ROW = b'{"query": "Hi", "answer": "Yo", "interactions": [{"query": "What?", "answer": "Yo."}]}\n'


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", b"", "empty.jsonl is empty: expected one JSON object per line"),
    ("bytes.jsonl", GOOD_ROW + GOOD_ROW.replace(b"Yo.", b"Y\xff."),
     "bytes.jsonl line 2 is not valid UTF-8 (byte 0xff at column 81): expected UTF-8 JSON lines"),
    ("cut.jsonl", GOOD_ROW + GOOD_ROW[:30], "cut.jsonl line 2 is not valid JSON (Expecting"),
    ("cut.parquet", b"PAR1\x00\x01", "cut.parquet is not a readable parquet file"),
])
def test_inspect_of_an_unreadable_file_exits_non_zero_naming_the_file_and_line(tmp_path, capsys, name, content,
                                                                                message):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["data", "inspect", str(path), "--config", "steps-1"]) == 2
    captured = capsys.readouterr()
    assert message in captured.out and str(path) in captured.out
    assert "error: 2 of 2 splits could not be read (steps-1/train, steps-1/validation)" in captured.err


def test_inspect_of_an_unreachable_hub_id_exits_non_zero_naming_it(capsys):
    assert main(["data", "inspect", "nobody/no-such-dataset", "--config", "steps-2", "--split", "train"]) == 2
    captured = capsys.readouterr()
    assert "could not load hub dataset 'nobody/no-such-dataset' config 'steps-2' split 'train'" in captured.out
    assert "error: 1 of 1 splits could not be read" in captured.err


def test_generate_by_default_writes_every_horizon_to_sixteen_steps_in_both_strategies(tmp_path, capsys):
    out = tmp_path / "curriculum"
    assert main(["data", "generate", "--out", str(out), "--num-train", "3", "--num-validation", "2",
                 "--num-supervised", "2", "--num-interactions", "10", "--num-stories", "5"]) == 0
    capsys.readouterr()
    for steps in (8, 10, 12, 14, 16):
        for config in (f"steps-{steps}", f"steps-{steps}-lr"):
            read = load_curriculum(out, config=config, split="validation")
            assert read.episodes == load_curriculum(config=config, split="validation", num_episodes=2).episodes
            assert {e.num_follow_ups for e in read} == {steps}
            assert {e.strategy for e in read} == {"long_range" if config.endswith("-lr") else "cumulative"}


def test_a_corpus_row_without_text_is_refused_by_row_split_source_and_field(tmp_path):
    import json

    from rxmrl.data import CurriculumValidationError

    sft, stories = tmp_path / "sft.jsonl", tmp_path / "stories.jsonl"
    sft.write_text("\n".join(json.dumps(r) for r in [{"query": "Who?", "answer": "Tom."},
                                                     {"query": "Where?", "answer": " "}]) + "\n")
    stories.write_text("\n".join(json.dumps(r) for r in [{"text": "Once."}, {"text": ""}]) + "\n")
    assert load_interactions(sft, num_interactions=1)[0].answer == "Tom."
    with pytest.raises(CurriculumValidationError, match=rf"interaction 1 of train \({sft}\) has field 'answer' = ' '"):
        load_interactions(sft)
    assert load_stories(stories, num_stories=1) == ["Once."]
    with pytest.raises(CurriculumValidationError, match=rf"story 1 of train \({stories}\) has field 'text' = ''"):
        load_stories(stories)
