"""experiments/bench_train.py: its argument checks, the speed-up table and the loss curve.

Nothing here times a step; one test runs the stage-4 worker for two steps on the working tree."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_mrl import load_script, row_of  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_train")


def run(steps_per_s, s_per_step, cpu, update, rollout, losses, load=1.0):
    return {"load": load, "stage4_steps_per_s": steps_per_s, "stage4_s_per_step": s_per_step,
            "stage4_cpu_s_per_step": cpu, "mrl_update_cpu_s": update, "mrl_rollout_cpu_s": rollout,
            "stage4_last_loss": losses[-1], "stage4_losses": losses}


def test_table_gives_medians_and_the_speed_up_of_ours_in_both_directions(bench):
    runs = {"baseline": [run(2.0, 0.5, 0.4, 4.0, 8.0, [7.0, 6.0], load=3.0), run(9.0, 0.1, 0.1, 1.0, 1.0, [7.0, 6.0]),
                         run(2.0, 0.5, 0.4, 4.0, 8.0, [7.0, 6.0])],
            "ours": [run(4.0, 0.25, 0.2, 2.0, 8.0, [7.0, 5.5], load=5.5)] * 3}
    table = bench.format_table(runs)
    assert row_of(table, "stage-4 steps/s")[:3] == ["2.000", "4.000", "2.00x"]  # higher is better
    assert row_of(table, "stage-4 s/step")[:3] == ["0.500", "0.250", "2.00x"]  # lower is better
    assert row_of(table, "MRL update CPU s/pass")[:3] == ["4.000", "2.000", "2.00x"]
    assert row_of(table, "MRL rollout CPU s")[:3] == ["8.000", "8.000", "1.00x"]
    assert "load average (1 min) during the runs: 1.00-5.50" in table
    assert row_of(table, "stage-4 last loss") == ["6.000000", "5.500000", "-5.0e-01"]
    curve = table.splitlines()[-2:]
    assert curve[0].split() == ["25", "7.000000", "7.000000", "+0.00e+00"]
    assert curve[1].split() == ["50", "6.000000", "5.500000", "-5.00e-01"]


def test_table_without_the_mrl_workload_leaves_its_rows_out(bench):
    only_stage4 = {key: value for key, value in run(2.0, 0.5, 0.4, 0, 0, [6.0]).items() if not key.startswith("mrl")}
    table = bench.format_table({"baseline": [only_stage4], "ours": [only_stage4]})
    assert "MRL" not in table
    assert "(same)" in row_of(table, "stage-4 last loss")


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--steps", "0"], ["--ppo-epochs", "-1"],
                                  ["--config", "experiments/no-such.toml"]])
def test_bad_arguments_are_refused_before_any_work(bench, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_an_unknown_baseline_is_one_error_line_and_exit_2(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--baseline", "no-such-commit-anywhere"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == \
        f"error: --baseline 'no-such-commit-anywhere' is not a commit of {bench.REPO}"


def test_the_stage4_worker_trains_the_working_tree(bench, monkeypatch):
    monkeypatch.setattr(bench, "WARMUP_STEPS", 1)
    figures = bench.stage4_worker(2, bench.REPO / "experiments" / "warmstart.toml")
    assert figures["stage4_s_per_step"] > 0 and figures["stage4_cpu_s_per_step"] > 0
    assert figures["stage4_steps_per_s"] == pytest.approx(1 / figures["stage4_s_per_step"])
    assert 0 < figures["stage4_last_loss"] < 20 and figures["stage4_losses"] == []
