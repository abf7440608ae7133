"""``report.md`` from the files of a run directory alone (no training): values, missing data, plots."""

import json

import numpy as np
import pytest

from rxmrl.evaluation.reward_range import EvaluationResult
from rxmrl.pipeline.report import write_report
from rxmrl.pipeline.run import evaluation_record
from rxmrl.runtime import write_json


def result(name: str, rewards: np.ndarray, recall: np.ndarray, final: np.ndarray | None = None) -> EvaluationResult:
    final = np.full(rewards.shape, np.nan) if final is None else final
    return EvaluationResult(agent=name, step_rewards=rewards, fact_recall=recall, held_fact_recall=recall,
                            final_recall=final, components={},
                            modes=[["standard"] * rewards.shape[1]] * rewards.shape[0], seconds=1.0,
                            meta={"config": "steps-3", "split": "validation", "scoring": "default (token)"})


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    oracle = result("oracle", 7 + rng.random((6, 3)), np.ones((6, 3)))
    no_facts = result("rxt", 2 + rng.random((6, 3)), np.full((6, 3), np.nan))  # data without facts
    write_json(tmp_path / "eval" / "oracle.json", evaluation_record("oracle", "oracle", oracle))
    write_json(tmp_path / "eval" / "mrl.json", evaluation_record("mrl", "x/mrl/final", no_facts))
    return tmp_path


def test_report_shows_only_what_the_files_hold(run_dir):
    report = write_report(run_dir).read_text()
    oracle = json.loads((run_dir / "eval" / "oracle.json").read_text())["summary"]["reward"]
    assert f"| oracle (reference answers) | {oracle['mean']:.2f} [{oracle['ci_low']:.2f}, {oracle['ci_high']:.2f}]" \
           in report
    assert "| RxT after MRL |" in report and "| stateless LLM baseline |" not in report
    assert "6 episodes of `steps-3` / `validation`" in report and "then 3 follow-ups" in report
    assert "## Latency per turn" not in report and "## MRL against its warm start" not in report
    assert (run_dir / "plots" / "reward_histograms.png").is_file()
    assert not (run_dir / "plots" / "latency_per_turn.png").exists()


def test_missing_fact_recall_is_null_in_json_and_na_in_the_report(run_dir):
    record = json.loads((run_dir / "eval" / "mrl.json").read_text())  # strict JSON: no NaN tokens
    assert record["summary"]["fact_recall"]["mean"] is None and record["episode_fact_recall"] == [None] * 6
    row = next(line for line in write_report(run_dir).read_text().splitlines()
               if line.startswith("| RxT after MRL"))
    assert row.split("|")[5].strip() == "n/a"


def test_latency_and_mrl_sections_appear_with_their_files(run_dir):
    from rxmrl.baseline.latency import LatencyRow

    rows = [LatencyRow(t, 10, 12 + 20 * t, 12, 0.01 * (t + 1), 0.005, 0.001, 0.1 * (t + 1), 0.02)
            for t in range(3)]
    write_json(run_dir / "latency.json", [row.__dict__ for row in rows])
    (run_dir / "mrl").mkdir()
    records = [{"step": i, "rollout/reward": 1.0 + i, "curriculum/stage": i // 2, "curriculum/steps": 2 + 2 * (i // 2)}
               for i in range(4)] + [{"step": 3, "eval/stage1/reward": 4.5}]
    (run_dir / "mrl" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = lambda reward, recall: {"reward": reward, "fact_recall": recall}  # noqa: E731
    interval = lambda mean: {"mean": mean, "ci95_low": mean - 0.1, "ci95_high": mean + 0.1}  # noqa: E731
    stages = [{"stage": i, "steps": 2 + 2 * i, "strategy": "cumulative", "warm_start": summary(5.0, 0.1),
               "mrl": summary(5.25, 0.125), "mrl_no_memory": summary(5.0, 0.0), "difference": interval(0.25)}
              for i in range(2)]
    stages[1]["fact_recall_difference"] = interval(0.025)  # stage 0: a run written before it was recorded
    write_json(run_dir / "mrl" / "comparison.json", {"stages": stages})
    report = write_report(run_dir).read_text()
    assert "| 0 | 2 | cumulative | 5.000 | 5.250 | +0.250 [+0.150, +0.350] | 5.000 | 0.100 | 0.125 | – |" in report
    assert "| 1 | 4 | cumulative | 5.000 | 5.250 | +0.250 [+0.150, +0.350] | 5.000 | 0.100 | 0.125 | " \
           "+0.025 [-0.075, +0.125] |" in report
    assert "| RxT after MRL |" in report and "| 5.0 |" in report  # MRL row: RxT latency of the last turn (ms)
    assert "| 2 | 10 | 52 | 12 | 30.0 | 5.0 |" in report
    assert (run_dir / "plots" / "latency_per_turn.png").is_file()
    assert (run_dir / "plots" / "mrl_reward_per_stage.png").is_file()


def final_on_last_step(values: list[float]) -> np.ndarray:
    """``(N, 3)`` final recall: ``values`` on the last step (the long-range final question), NaN before it."""
    final = np.full((len(values), 3), np.nan)
    final[:, -1] = values
    return final


def test_final_recall_has_its_own_columns_with_intervals_when_the_episodes_are_long_range(run_dir):
    from rxmrl.evaluation.compare import compare
    from rxmrl.evaluation.retention import Retention

    rewards, recall = np.ones((4, 3)), np.full((4, 3), 0.5)
    warm, warm_reset = (result(n, rewards, recall, final_on_last_step(v))
                        for n, v in (("warm", [0.0, 1.0, 0.0, 1.0]), ("warm reset", [0.0] * 4)))
    mrl, mrl_reset = (result(n, rewards, recall, final_on_last_step(v))
                      for n, v in (("mrl", [1.0, 1.0, 1.0, 1.0]), ("mrl reset", [0.0, 0.0, 0.0, 1.0])))
    write_json(run_dir / "eval" / "mrl.json", evaluation_record("mrl", "x/mrl/final", mrl))
    retention = Retention({"warm_start": warm, "mrl": mrl}, {"warm_start": warm_reset, "mrl": mrl_reset},
                          {"warm_start": compare(warm, warm_reset), "mrl": compare(mrl, mrl_reset)},
                          {"mrl": compare(mrl, warm)}, "warm_start")
    write_json(run_dir / "retention" / "retention.json", retention.summary())
    report = write_report(run_dir).read_text()
    header = next(line for line in report.splitlines() if line.startswith("| model | reward mean"))
    assert "| final recall [95% CI] |" in header
    assert next(line for line in report.splitlines() if line.startswith("| RxT after MRL |")).split("|")[7].strip() \
        == "1.000 [1.000, 1.000]"
    assert "| RxT after MRL | 1.000 [1.000, 1.000] | 0.250 [0.000, 0.750] | +0.750 [+0.250, +1.000] " \
           "| +0.500 [+0.000, +1.000] |" in report
    assert "none, these episodes are cumulative" not in report


def test_cumulative_episodes_say_they_have_no_final_recall(run_dir):
    report = write_report(run_dir).read_text()
    assert "final recall [95% CI]" not in report
    assert "*Final recall: none, these episodes are cumulative (no long-range final question).*" in report
