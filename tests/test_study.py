"""``rxmrl study seeds``: the plan of runs, the verdict on hand-made records, and a tiny study end to end."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from rxmrl.cli import main
from rxmrl.config import load_config
from rxmrl.study.plan import PERTURBATIONS, parse_perturbations, plan_runs
from rxmrl.study.summary import format_table, reads_memory, summarise
from rxmrl.training.supervised import SupervisedConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_supervised_cli import WARMSTART, tiny_overrides  # noqa: E402


def record(name: str, recall: float, reset: float, gap_low: float, gap_high: float) -> dict:
    gap = recall - reset
    return {"name": name, "recall": {"mean": recall, "ci_low": recall - 0.03, "ci_high": recall + 0.03},
            "reset_recall": {"mean": reset, "ci_low": reset - 0.02, "ci_high": reset + 0.02},
            "gap": {"mean": gap, "ci_low": gap_low, "ci_high": gap_high}, "stage4_seconds": 100.0,
            "probe": {"fact_acc_with_memory": 0.6, "fact_acc_reset_memory": 0.3}}


def test_a_run_reads_memory_only_with_a_large_gap_whose_interval_is_above_zero():
    assert reads_memory({"mean": 0.31, "ci_low": 0.25}) and not reads_memory({"mean": 0.29, "ci_low": 0.25})
    assert not reads_memory({"mean": 0.50, "ci_low": -0.01})  # large, but its interval crosses 0
    assert not reads_memory({"mean": 0.50, "ci_low": 0.0})


def test_the_summary_counts_the_share_reading_and_the_median_and_worst_recall():
    summary = summarise([record("a", 0.70, 0.08, 0.55, 0.69), record("b", 0.60, 0.08, -0.02, 1.0),
                         record("c", 0.35, 0.08, 0.20, 0.33)])
    assert [run["reads_memory"] for run in summary["runs"]] == [True, False, False]
    assert summary["share_reading"] == pytest.approx(1 / 3) and summary["reading"] == 1
    assert summary["median_recall"] == pytest.approx(0.60) and summary["worst_recall"] == pytest.approx(0.35)
    table = format_table(summary)
    assert "1 of 3 runs (33%)" in table and "worst 0.350" in table
    assert [line.split()[-4] for line in table.splitlines()[1:4]] == ["yes", "no", "no"]


def test_the_plan_crosses_seeds_with_perturbations_and_seeds_every_trained_stage(tmp_path):
    runs = plan_runs(WARMSTART, ["stage4.fact_weight=9"], tmp_path / "init", tmp_path / "out", [0, 3],
                     parse_perturbations(["fused", "foreach", "threads2"], cuda=False), [3, 4])
    assert [run.name for run in runs] == ["seed0-fused", "seed0-foreach", "seed0-threads2",
                                          "seed3-fused", "seed3-foreach", "seed3-threads2"]
    assert [run.threads for run in runs] == [1, 1, 2] * 2
    config = load_config(SupervisedConfig, WARMSTART, runs[4].overrides)
    assert config.stage4.fact_weight == 9 and config.stage3.loop.seed == config.stage4.loop.seed == config.seed == 3
    assert config.stage3.optim.kernel == config.stage4.optim.kernel == "foreach"
    assert config.run_dir == tmp_path / "out" / "runs" / "seed3-foreach"


def test_a_perturbation_that_changes_nothing_here_or_is_unknown_is_refused():
    with pytest.raises(ValueError, match="bf16 autocast runs on CUDA only"):
        parse_perturbations(["fused", "fp32"], cuda=False)
    assert parse_perturbations(["fp32"], cuda=True) == [PERTURBATIONS["fp32"]]
    with pytest.raises(ValueError, match="'fast' is not one of"):
        parse_perturbations(["fast"], cuda=False)


def test_a_tiny_study_trains_measures_and_resumes(tmp_path, capsys):
    base = tmp_path / "base"
    sets = tiny_overrides(base)
    assert main(["train", "supervised", "--config", str(WARMSTART), "--stages", "1,2,3", *sets]) == 0
    pairs = [sets[i:i + 2] for i in range(0, len(sets), 2)]
    recipe = [flag for pair in pairs if not pair[1].startswith("run_dir=") for flag in pair]
    out, config = tmp_path / "study", tmp_path / "warmstart.toml"
    config.write_text(WARMSTART.read_text())
    command = ["study", "seeds", "--config", str(config), "--init", str(base / "stage-3"), "--out", str(out),
               "--seeds", "0,1", "--steps", "2", "--episodes", "4", "--cores", "2", *recipe]
    capsys.readouterr()
    assert main(command) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [run["name"] for run in summary["runs"]] == ["seed0-fused", "seed0-foreach", "seed1-fused",
                                                        "seed1-foreach"]
    assert 0 <= summary["share_reading"] <= 1 and (out / "recall.png").stat().st_size > 0
    for run in summary["runs"]:
        assert run["retention"]["episodes"] == 4 and 0 <= run["recall"]["mean"] <= 1
        assert run["probe"]["tokens"] > 0 and run["stage4_seconds"] > 0
    saved = load_config(SupervisedConfig, out / "runs" / "seed1-foreach" / "stage-4" / "config.toml")
    assert saved.stage4.optim.kernel == "foreach" and saved.stage4.loop.seed == 1
    assert (out / "table.txt").read_text().count("\nseed") == 4

    capsys.readouterr()
    assert main(command) == 0  # everything done: nothing trains again
    assert "4 of 4 runs already done" in capsys.readouterr().out
    assert main([*command, "--set", "stage4.fact_weight=3"]) == 2  # another recipe into the same folder
    assert "asked with other recipe" in capsys.readouterr().err
    # every run read the recipe as it was when the study started; an edited config file is refused by name
    assert json.loads((out / "runs" / "seed0-fused" / "spec.json").read_text())["config"] == str(out / "recipe.toml")
    config.write_text(re.sub(r"(?m)^fact_weight = .*$", "fact_weight = 7.0", WARMSTART.read_text()))
    assert main(command) == 2
    assert "no longer resolves to the recipe" in (text := capsys.readouterr().err) and "stage4.fact_weight" in text
