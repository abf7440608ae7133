"""Files in the published schema load offline through load_curriculum, as do the SFT and story corpora."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rxmrl.data import CurriculumValidationError, load_curriculum, load_interactions, load_stories, write_episodes
from rxmrl.data.curriculum import episodes_table

ROWS = [
    {"query": f"Tell me about child {i}.", "answer": f"Child {i} had a blue kite.",
     "interactions": [{"answer": f"It was blue, child {i} said.", "query": "What colour was the kite?"},
                      {"answer": "They went to the park.", "query": "Where did they go?"}]}
    for i in range(5)
]
PUBLISHED_INTERACTION = pa.struct([("answer", pa.string()), ("query", pa.string())])


def _write_published_parquet(path):
    table = pa.table({
        "query": [r["query"] for r in ROWS],
        "answer": [r["answer"] for r in ROWS],
        "interactions": pa.array([r["interactions"] for r in ROWS], pa.list_(PUBLISHED_INTERACTION)),
    })
    pq.write_table(table, path)


def test_published_parquet_file_loads_offline(tmp_path):
    _write_published_parquet(tmp_path / "train.parquet")
    data = load_curriculum(tmp_path / "train.parquet", steps=2, split="train")
    assert (len(data), data.config, data.split) == (5, "steps-2", "train")
    assert data[3].query == "Tell me about child 3."
    assert data[3].interactions[0].answer == "It was blue, child 3 said."
    assert data[3].facts is None and data[3].strategy is None


def test_published_jsonl_file_loads_offline(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    data = load_curriculum(path, steps=2, num_episodes=3)
    assert [e.query for e in data] == [r["query"] for r in ROWS[:3]]


def test_hub_style_folder_selects_config_and_split(tmp_path):
    (tmp_path / "steps-2").mkdir()
    _write_published_parquet(tmp_path / "steps-2" / "validation-00000-of-00001.parquet")
    data = load_curriculum(tmp_path, config="steps-2", split="validation")
    assert len(data) == 5
    with pytest.raises(CurriculumValidationError, match=r"unknown config 'steps-4' in .*available \['steps-2'\]"):
        load_curriculum(tmp_path, steps=4)
    with pytest.raises(CurriculumValidationError, match="no 'train' split in"):
        load_curriculum(tmp_path, steps=2, split="train")


def test_generated_episodes_round_trip_through_parquet_and_jsonl(tmp_path):
    episodes = load_curriculum(steps=4, long_range=True, num_episodes=20).episodes
    for name in ("steps-4-lr/train.parquet", "episodes.jsonl"):
        write_episodes(episodes, tmp_path / name)
    assert episodes_table(episodes).schema.field("interactions").type == pa.list_(PUBLISHED_INTERACTION)
    assert load_curriculum(tmp_path, config="steps-4-lr").episodes == episodes
    assert load_curriculum(tmp_path / "episodes.jsonl", config="steps-4-lr").episodes == episodes


def test_file_rows_are_validated_with_the_source_in_the_message(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with pytest.raises(CurriculumValidationError, match=r"episode 0 of steps-3/train \(.*rows.jsonl\) has 2 "
                                                        r"follow-ups, needs 3"):
        load_curriculum(path, steps=3)


def test_hub_id_offline_fails_with_a_helpful_message():
    with pytest.raises(CurriculumValidationError, match="could not load hub dataset 'ReactiveAI/TinyStories-MRL' "
                                                        "config 'steps-8' split 'train'.*offline"):
        load_curriculum("ReactiveAI/TinyStories-MRL", steps=8)


def test_missing_local_path_is_reported():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_curriculum("./no/such/folder", steps=2)


def test_truncation_is_counted_not_dropped():
    class WordTokenizer:
        def encode_query(self, text):
            return [1, 3] + text.split()

        def encode_answer(self, text):
            return [4] + text.split() + [2]

    data = load_curriculum(steps=2, num_episodes=10, tokenizer=WordTokenizer(), max_length=12)
    report = data.truncation
    assert len(data) == 10 and report.total == 30
    lengths = [len(i.query.split()) + len(i.answer.split()) + 4 for e in data for i in e.all_interactions()]
    assert report.interactions == sum(n > 12 for n in lengths) > 0
    assert report.longest_interaction == max(lengths)


def test_sft_and_story_corpora_load_from_files_and_embedded(tmp_path):
    pq.write_table(pa.table({"query": ["Hi?", "Who?"], "answer": ["Hello.", "Lily."]}), tmp_path / "train.parquet")
    assert [i.answer for i in load_interactions(tmp_path)] == ["Hello.", "Lily."]
    (tmp_path / "stories.jsonl").write_text(json.dumps({"text": "Once upon a time."}) + "\n")
    assert load_stories(tmp_path / "stories.jsonl") == ["Once upon a time."]
    assert len(load_interactions(num_interactions=50)) == 50
    stories = load_stories(num_stories=20)
    assert len(set(stories)) == 20 and all(s.startswith("Once upon a time") for s in stories)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(CurriculumValidationError, match="story 0 of train .* field 'text'"):
        load_stories(tmp_path / "bad.jsonl")
