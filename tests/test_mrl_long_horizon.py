"""MRL curriculum stages beyond 8 steps: a curriculum to 16 steps validates, each stage builds its episodes
(from the embedded generator and from a generated folder), and a tiny run trains and compares them."""

from __future__ import annotations

import json

import pytest

from rxmrl.cli import main
from rxmrl.config import load_config
from rxmrl.training.mrl import MrlRunConfig, load_stage_data
from rxmrl.training.mrl.rollout import stage_episodes
from test_mrl_trainer import one_thread, tiny_config, tiny_policy  # noqa: F401 (one_thread: an autouse fixture)

CURRICULUM = "".join(f'[[stages]]\nsteps = {steps}\nstrategy = "mixed"\nnum_episodes = 4\n\n' for steps in (4, 8, 12, 16))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("curriculum")
    assert main(["data", "generate", "--out", str(out), "--configs", "steps-12", "steps-12-lr", "steps-16",
                 "steps-16-lr", "--num-train", "4", "--num-validation", "4", "--num-interactions", "10",
                 "--num-stories", "5"]) == 0
    return out


def test_a_curriculum_to_sixteen_steps_builds_every_stage_of_either_source(tmp_path, generated, capsys):
    path = tmp_path / "long.toml"
    path.write_text(CURRICULUM)
    config = load_config(MrlRunConfig, path, [])
    assert [stage.steps for stage in config.stages] == [4, 8, 12, 16]
    for stage in config.stages:
        sources = ["embedded"] + ([str(generated)] if stage.steps >= 12 else [])
        for source in sources:
            data = load_stage_data(stage, source, "validation", stage.num_episodes)
            assert data.long_range == [True, True, False, False]  # mixed: half long range
            episodes = stage_episodes(data.episodes, data.long_range, stage.steps)
            assert {e.num_follow_ups for e in episodes} == {stage.steps}
            assert all(e.facts[-1] and {f.source for f in e.facts[-1]} == {0}  # the final question: the first
                       for e, long_range in zip(episodes, data.long_range) if long_range)  # interaction's facts


def test_a_tiny_run_trains_and_compares_stages_of_twelve_and_sixteen_steps(tokenizer, tmp_path):
    from rxmrl.training.mrl.run import run_mrl

    warm = tmp_path / "warm"
    tiny_policy(tokenizer.vocab_size).save_pretrained(warm)
    tokenizer.save(warm)
    config = tiny_config(f"init={warm}", f"run_dir={tmp_path / 'run'}", "mrl.ppo_epochs=1", steps=(12, 16))
    config.stages[0].strategy, config.stages[1].strategy = "mixed", "long_range"
    result, rows = run_mrl(config)
    assert result.iterations == 4  # two batches of 3 + 1 episodes per stage
    assert [(row["steps"], row["strategy"]) for row in rows] == [(12, "mixed"), (16, "long_range")]
    assert [len([k for k in row["mrl"] if k.startswith("reward_step_")]) for row in rows] == [12, 16]
    saved = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert [stage["steps"] for stage in saved["stages"]] == [12, 16]


@pytest.fixture(scope="module")
def tokenizer():
    from rxmrl.data import default_tokenizer

    return default_tokenizer()
