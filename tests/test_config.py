"""Configuration: TOML loading, ``--set`` overrides, strict errors and a lossless dump."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from rxmrl.config import (ConfigError, add_config_arguments, apply_overrides, config_from_args, dump_toml,
                          format_config, load_config, save_config)
from rxmrl.training.loop import LoopConfig
from rxmrl.training.optim import OptimConfig
from rxmrl.training.schedule import ScheduleConfig


@dataclass
class ModelConfig:
    dim: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    attention: Literal["sqa", "mha"] = "sqa"
    tied_embedding: bool = True


@dataclass
class StageConfig:
    steps: int = 2
    strategy: str = "cumulative"
    lr: float = 1e-4
    trainable: list[str] = field(default_factory=lambda: ["memory_attention"])


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    max_tokens: Optional[int] = None
    betas: tuple[float, float] = (0.9, 0.95)
    output_dir: Path = Path("runs/default")
    group_lr: dict[str, float] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig(), StageConfig(steps=4)])


@dataclass
class StageRun:
    """How a stage composes the shared loop's configs."""
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_toml_values_fill_nested_dataclasses_and_keep_other_defaults(tmp_path):
    path = write(tmp_path, """
name = "tiny"
betas = [0.8, 0.9]
[model]
dim = 128
[group_lr]
encoder = 1e-3
[[stages]]
steps = 8
trainable = ["decoder", "encoder"]
""")
    config = load_config(RunConfig, path)
    assert config.name == "tiny" and config.model.dim == 128 and config.model.num_layers == 2
    assert config.betas == (0.8, 0.9) and isinstance(config.betas, tuple)
    assert config.group_lr == {"encoder": 1e-3}
    assert len(config.stages) == 1 and config.stages[0].steps == 8
    assert config.stages[0].trainable == ["decoder", "encoder"]


def test_a_table_includes_a_file_relative_to_its_own_and_overrides_its_keys(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "model.toml").write_text('include = "base.toml"\ndim = 96\n')
    (tmp_path / "parts" / "base.toml").write_text('dim = 32\nnum_layers = 6\nattention = "mha"\n')
    (tmp_path / "stages.toml").write_text("[[stages]]\nsteps = 8\n[[stages]]\nsteps = 16\n")
    path = write(tmp_path, """
include = "stages.toml"
name = "composed"
[model]
include = "parts/model.toml"
attention = "sqa"
""")
    config = load_config(RunConfig, path)
    assert (config.model.dim, config.model.num_layers, config.model.attention) == (96, 6, "sqa")
    assert [s.steps for s in config.stages] == [8, 16] and config.name == "composed"
    (tmp_path / "more.toml").write_text('include = "stages.toml"\n[[stages]]\nsteps = 3\n')
    assert [s.steps for s in load_config(RunConfig, write(tmp_path, 'include = "more.toml"')).stages] == [3]


@pytest.mark.parametrize("text, files, fragment", [
    ('[model]\ninclude = "gone.toml"', {}, r"gone.toml' does not exist \(included by"),
    ('include = "a.toml"', {"a.toml": 'include = "run.toml"'}, "includes form a cycle"),
    ('[model]\ninclude = 3', {}, r"model.include = 3: expected the path of a TOML file"),
    ('include = "a.toml"', {"a.toml": "dim = "}, "a.toml: invalid TOML"),
])
def test_a_bad_include_names_the_file_and_the_key(tmp_path, text, files, fragment):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_config(RunConfig, write(tmp_path, text))


def test_set_overrides_are_coerced_from_the_annotations():
    config = apply_overrides(RunConfig(), [
        "model.dim=256", "model.dropout=0.1", "model.tied_embedding=false", "model.attention=mha",
        "name=123", "max_tokens=4096", "betas=[0.5, 0.6]", "output_dir=/tmp/x", "stages.1.lr=3e-4",
        "stages.0.trainable=[\"decoder\"]", "group_lr.decoder=2e-4",
    ])
    assert config.model.dim == 256 and isinstance(config.model.dim, int)
    assert config.model.dropout == 0.1 and config.model.tied_embedding is False
    assert config.model.attention == "mha"
    assert config.name == "123"  # str fields take the text verbatim
    assert config.max_tokens == 4096 and config.betas == (0.5, 0.6)
    assert config.output_dir == Path("/tmp/x")
    assert config.stages[1].lr == 3e-4 and config.stages[1].steps == 4
    assert config.stages[0].trainable == ["decoder"]
    assert config.group_lr == {"decoder": 2e-4}
    assert apply_overrides(config, ["max_tokens=none"]).max_tokens is None
    assert RunConfig().model.dim == 64  # the original is untouched


def test_unknown_key_names_the_path_lists_valid_keys_and_suggests_a_close_match(tmp_path):
    with pytest.raises(ConfigError) as error:
        apply_overrides(RunConfig(), ["model.dimm=3"])
    message = str(error.value)
    assert "'model.dimm'" in message and "Did you mean 'model.dim'?" in message
    assert "Valid keys: attention, dim, dropout, num_layers, tied_embedding" in message

    with pytest.raises(ConfigError, match=r"unknown key 'model.layers'.*'model.num_layers'"):
        load_config(RunConfig, write(tmp_path, "[model]\nlayers = 3\n"))


@pytest.mark.parametrize("override, fragment", [
    ("model.dim=abc", "model.dim: expected int, got str 'abc'"),
    ("model.dim=1.5", "model.dim: expected int, got float 1.5"),
    ("model.tied_embedding=1", "model.tied_embedding: expected bool, got int 1"),
    ("model.attention=sqaa", "model.attention: 'sqaa' is not one of ['sqa', 'mha']; did you mean 'sqa'?"),
    ("betas=[0.9]", "betas: expected 2 items"),
    ("stages.5.lr=1", "stages.5: stages has 2 item(s)"),
    ("seed.value=1", "seed.value: seed holds a value of type int, which has no sub-keys"),
    ("seed", "must look like key.path=value"),
])
def test_bad_values_name_the_key_the_value_and_the_expected_type(override, fragment):
    with pytest.raises(ConfigError) as error:
        apply_overrides(RunConfig(), [override])
    assert fragment in str(error.value)


def test_bad_value_in_a_file_names_the_nested_key(tmp_path):
    with pytest.raises(ConfigError, match=r"stages\[0\]\.steps: expected int, got str 'two'"):
        load_config(RunConfig, write(tmp_path, '[[stages]]\nsteps = "two"\n'))


def test_dump_round_trips_to_an_equal_config(tmp_path):
    config = apply_overrides(RunConfig(), [
        "name=quote\"and\\back", "max_tokens=7", "group_lr.encoder=0.001", "model.dropout=0.25"])
    saved = save_config(config, tmp_path / "resolved.toml")
    assert load_config(RunConfig, saved) == config
    default = RunConfig()
    assert load_config(RunConfig, write(tmp_path, dump_toml(default))) == default
    assert 'max_tokens = "none"' in dump_toml(default)


def test_pretty_print_shows_every_leaf_once():
    text = format_config(RunConfig())
    assert text.splitlines()[0] == "RunConfig:"
    assert "model.dim" in text and "stages.1.steps" in text and "= 4" in text
    keys = [line.split("=")[0].strip() for line in text.splitlines()[1:]]
    assert len(keys) == len(set(keys)) and "model.attention" in keys


def test_command_line_config_and_repeated_set_flags(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    path = write(tmp_path, "seed = 5\n[model]\ndim = 32\n")
    args = parser.parse_args(["--config", str(path), "--set", "model.dim=48", "--set", "seed=6"])
    config = config_from_args(RunConfig, args)
    assert (config.seed, config.model.dim, config.model.num_layers) == (6, 48, 2)
    assert config_from_args(RunConfig, parser.parse_args([])) == RunConfig()
    with pytest.raises(ConfigError, match="does not exist"):
        config_from_args(RunConfig, parser.parse_args(["--config", str(tmp_path / "missing.toml")]))


def test_the_loop_configs_load_override_and_round_trip_as_part_of_a_stage_config(tmp_path):
    config = apply_overrides(StageRun(), ["loop.amp_dtype=float16", "loop.grad_clip=none",
                                          "optim.group_lr.encoder=1e-3", "optim.betas=[0.9, 0.99]",
                                          "schedule.total_steps=500"])
    assert config.loop.grad_clip is None and config.optim.group_lr == {"encoder": 1e-3}
    assert load_config(StageRun, save_config(config, tmp_path / "stage.toml")) == config
    with pytest.raises(ConfigError, match=r"loop.amp_dtype: 'fp16' is not one of \['bfloat16', 'float16'\]"):
        apply_overrides(StageRun(), ["loop.amp_dtype=fp16"])
    with pytest.raises(ConfigError, match=r"loop.max_steps: max_steps must be >= 1, got 0"):
        apply_overrides(StageRun(), ["loop.max_steps=0"])
