"""The published-scale configs (GPU) build and train a few steps on CPU with tiny overrides."""

from pathlib import Path

import pytest

from pipeline_helpers import tiny_overrides
from rxmrl.config import load_config
from rxmrl.pipeline import PipelineConfig, run_pipeline

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("name, preset", [("micro.toml", "micro"),
                                          ("rxt_alpha_supervised.toml", "rxt-alpha-supervised")])
def test_published_scale_config_runs_a_few_steps_on_cpu(tmp_path, name, preset):
    import json

    config = load_config(PipelineConfig, EXPERIMENTS / name, tiny_overrides(tmp_path, mrl_stages=3))
    run_pipeline(config, ["data", "supervised", "mrl"], say=lambda line: None)
    stage4 = json.loads((tmp_path / "warmstart" / "stage-4" / "config.json").read_text())
    assert stage4["dim"] == 32 and stage4["num_layers"] == 1  # the preset, shrunk by the overrides
    saved = load_config(PipelineConfig, tmp_path / "config.toml")
    assert saved.supervised.model.preset == preset and len(saved.mrl.stages) == 3
    comparison = json.loads((tmp_path / "mrl" / "comparison.json").read_text())
    assert [row["steps"] for row in comparison["stages"]] == [2, 4, 8]
    assert (tmp_path / "mrl" / "final" / "model.safetensors").is_file()
