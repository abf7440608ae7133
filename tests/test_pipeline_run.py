"""``rxmrl run`` end to end on a tiny model: phases, resume after a kill, report numbers from the JSON files."""

import json
import re
import shutil
from pathlib import Path

import pytest

from field_reads import FieldReads
from pipeline_helpers import tiny_overrides
from rxmrl.config import ConfigError, load_config
from rxmrl.pipeline import PHASES, PipelineConfig, run_pipeline
from rxmrl.pipeline import run as pipeline_run

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def overrides(run_dir) -> list[str]:
    """The tiny quickstart, DMPO beside MRL."""
    # MRL with impo's critic beside DMPO: the quickstart's grpo and DMPO build none, so the critic's settings
    # would go unread (grpo itself is trained in test_mrl_trainer and in the quickstart)
    return [*tiny_overrides(run_dir), "dmpo.enabled=true", "mrl.mrl.advantages.estimator=impo", "mrl.mrl.group_size=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run killed during the baseline phase, then the same command again (as a user would re-run it)."""
    run_dir = tmp_path_factory.mktemp("quickstart")
    config = load_config(PipelineConfig, QUICKSTART, overrides(run_dir))
    killed, resumed = [], []

    def kill(_config):
        raise KeyboardInterrupt("killed during the baseline")

    reads = FieldReads(config)  # which settings the two attempts read, together
    real = pipeline_run.PHASE_FUNCTIONS["baseline"]
    pipeline_run.PHASE_FUNCTIONS["baseline"] = kill
    with reads.recording():
        try:
            with pytest.raises(KeyboardInterrupt):
                run_pipeline(config, say=killed.append)
        finally:
            pipeline_run.PHASE_FUNCTIONS["baseline"] = real
        markers_after_kill = sorted(p.stem for p in (run_dir / "phases").glob("*.json"))
        timings = run_pipeline(config, say=resumed.append)
    return {"dir": run_dir, "config": config, "killed": killed, "resumed": resumed,
            "markers_after_kill": markers_after_kill, "timings": timings, "unread": reads.unread()}


def test_every_setting_of_the_run_config_is_read_by_its_phases(run):
    """Supervised, MRL, baseline, eval, audit, latency and report sections: no field that nothing reads."""
    assert run["unread"] == [], f"settings no phase reads: {run['unread']}"


def lines_about(lines, phase):
    return [line for line in lines if re.match(rf"\[\d+/\d+\] {phase} ", line)]


def test_an_interrupted_run_resumes_at_the_interrupted_phase(run):
    assert run["markers_after_kill"] == ["data", "dmpo", "mrl", "supervised"]
    for phase in ("data", "supervised", "mrl", "dmpo"):
        assert "skipped" in lines_about(run["resumed"], phase)[0]
    for phase in ("baseline", "eval", "latency", "report"):
        assert lines_about(run["resumed"], phase)[-1].split(": ")[-1].startswith("done in")
    assert sorted(p.stem for p in (run["dir"] / "phases").glob("*.json")) == sorted(PHASES)


def test_timings_hold_every_phase_and_their_total(run):
    timings = json.loads((run["dir"] / "timings.json").read_text())
    assert list(timings) == [*PHASES, "total"]
    assert timings["total"] == pytest.approx(sum(timings[p] for p in PHASES))
    assert all(timings[p] >= 0 for p in PHASES) and timings["supervised"] > 0
    report = (run["dir"] / "report.md").read_text()
    for phase in PHASES[:-1]:
        assert f"| {phase} | {timings[phase]:.1f} |" in report


def test_the_run_directory_holds_the_resolved_config(run):
    saved = load_config(PipelineConfig, run["dir"] / "config.toml")
    assert saved == run["config"].resolved()
    assert (run["dir"] / "mrl" / "metrics.jsonl").is_file() and (run["dir"] / "warmstart" / "stage-4").is_dir()


def test_report_links_a_png_for_every_plot(run):
    report = (run["dir"] / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {Path(link).name for link in links} == {"mrl_reward_per_stage.png", "reward_histograms.png",
                                                    "reward_by_step.png", "fact_recall.png", "latency_per_turn.png",
                                                    "audit-default.png", "audit-memory.png"}
    for link in links:
        data = (run["dir"] / link).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def table_rows(report: str, header_start: str) -> list[list[str]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def test_report_table_numbers_match_the_eval_json(run):
    report = (run["dir"] / "report.md").read_text()
    rows = table_rows(report, "| model | reward mean")
    assert len(rows) == 6
    latency = json.loads((run["dir"] / "latency.json").read_text())
    for row, name in zip(rows, ["warm_start", "mrl", "dmpo", "baseline", "oracle", "random"], strict=True):
        summary = json.loads((run["dir"] / "eval" / f"{name}.json").read_text())["summary"]
        reward, recall, held = summary["reward"], summary["fact_recall"], summary["held_fact_recall"]
        assert numbers(row[1]) == pytest.approx([reward["mean"], reward["ci_low"], reward["ci_high"]], abs=0.005)
        assert numbers(row[2]) + numbers(row[3]) == pytest.approx([reward["min"], reward["max"]], abs=0.005)
        assert numbers(row[4]) == pytest.approx([recall["mean"], recall["ci_low"], recall["ci_high"]], abs=0.0005)
        if held["mean"] is None:
            assert row[5] == "n/a"
        else:
            assert numbers(row[5]) == pytest.approx([held["mean"], held["ci_low"], held["ci_high"]], abs=0.0005)
        key = {"warm_start": "rxt_seconds", "mrl": "rxt_seconds", "dmpo": "rxt_seconds",
               "baseline": "stateless_seconds"}.get(name)
        if key:
            assert numbers(row[6]) == pytest.approx([latency[-1][key] * 1e3], abs=0.05)
        else:
            assert row[6] == "–"
    published = table_rows(report, "| model (published)")
    assert published == [["RxT-Alpha Mini (published)", "3.7", "1.8", "6.2"],
                         ["22M stateless LLM (published)", "2.4", "1.4", "4.0"]]
    assert "not comparable number for number" in report


def test_report_retention_table_matches_the_retention_json(run):
    retention = json.loads((run["dir"] / "retention" / "retention.json").read_text())
    assert retention["baseline"] == "warm_start" and list(retention["models"]) == ["warm_start", "mrl", "dmpo"]
    rows = table_rows((run["dir"] / "report.md").read_text(), "| model | fact recall [95% CI] | reset memory")
    assert [row[0] for row in rows] == ["RxT warm start (stage 4)", "RxT after MRL", "RxT after DMPO"]
    for row, name in zip(rows, ["warm_start", "mrl", "dmpo"]):
        model = retention["models"][name]
        for cell, stat in zip(row[1:4], [model["with_memory"]["fact_recall"], model["reset_memory"]["fact_recall"],
                                         model["gap"]["fact_recall"]]):
            assert numbers(cell) == pytest.approx([stat["mean"], stat["ci_low"], stat["ci_high"]], abs=0.0005)
    gain = retention["models"]["mrl"]["gain"]["fact_recall"]
    assert numbers(rows[1][4]) == pytest.approx([gain["mean"], gain["ci_low"], gain["ci_high"]], abs=0.0005)
    assert rows[0][4] == "–"


def test_the_report_compares_dmpo_with_its_warm_start_per_stage_as_the_dmpo_run_wrote_it(run):
    comparison = json.loads((run["dir"] / "dmpo" / "comparison.json").read_text())
    assert comparison["algorithm"] == "dmpo"
    report = (run["dir"] / "report.md").read_text()
    assert "## DMPO against its warm start" in report and "## MRL against its warm start" in report
    rows = table_rows(report, "| stage | steps | strategy | training reward: warm start | DMPO |")
    assert len(rows) == len(comparison["stages"]) == 3
    for row, stage in zip(rows, comparison["stages"]):
        assert numbers(row[4]) == pytest.approx([stage["mrl"]["reward"]], abs=0.0005)  # the trained policy
    assert "train/loss/dpo" in (run["dir"] / "dmpo" / "metrics.jsonl").read_text()
    assert not any(stage.teacher_forcing for stage in run["config"].resolved().dmpo_run().stages)


def test_report_audit_table_matches_the_audit_json(run):
    audit = json.loads((run["dir"] / "audit" / "audit.json").read_text())
    assert list(audit["rewards"]) == ["default", "memory"] and audit["episodes"] == 4
    report = (run["dir"] / "report.md").read_text()
    rows = {row[0]: row[1:] for row in table_rows(report, "| case |")}
    cases = audit["rewards"]["memory"]["cases"]
    assert set(rows) == set(cases) and {"warm start", "warm start (reset memory)", "MRL (reset memory)"} <= set(rows)
    for case, cells in rows.items():
        for cell, name in zip(cells, ["default", "memory"]):
            stat = audit["rewards"][name]["cases"][case]["reward"]
            assert numbers(cell) == pytest.approx([stat["mean"], stat["ci_low"], stat["ci_high"]], abs=0.005)
    gaps = table_rows(report, "| reward | paired gap |")
    assert ["`memory`", "warm start - warm start (reset memory)"] in [row[:2] for row in gaps]
    assert cases["oracle"]["reward"]["mean"] == pytest.approx(10.0, abs=1e-4)


def test_the_report_states_which_reward_and_sampling_each_evaluation_used(run):
    report = (run["dir"] / "report.md").read_text()
    assert json.loads((run["dir"] / "eval" / "mrl.json").read_text())["summary"]["sampling"] == "greedy"
    assert "The trained models' answers: greedy (`eval.sampling`)." in report  # the reward range
    assert ("The training reward (memory, policy-embedding) is the one MRL trained with; the validation answers "
            "are greedy (`mrl.eval_sampling`); validation writes the reference answers into memory "
            "(`validation.teacher_forcing`: every fact asked about is in memory). The objective's terms that "
            "trained: `policy`, `entropy`, `reference_kl`, `stabilisation_kl`, `memory`, `value`.") in report
    assert "| `default` (random-embedding): MRL − warm start [95% CI] |" in report  # validation = [eval]'s reward
    assert "the models' answers greedy;" in report  # the audit
    assert ("answers sampled (temperature 1, top-k 50) (`mrl.sampling`); stars: the same reward on each epoch's "
            "validation episodes, answers greedy (`mrl.eval_sampling`).") in report


def test_eval_json_holds_the_per_episode_values_behind_the_summary(run):
    record = json.loads((run["dir"] / "eval" / "oracle.json").read_text())
    assert len(record["episode_rewards"]) == record["summary"]["episodes"] == 4
    assert record["summary"]["reward"]["mean"] == pytest.approx(sum(record["episode_rewards"]) / 4)
    assert record["summary"]["fact_recall"]["mean"] == 1.0  # the oracle states every fact


def test_rerun_skips_finished_phases_and_redoes_only_missing_models(run):
    run_dir = run["dir"]
    oracle = (run_dir / "eval" / "oracle.json").stat().st_mtime_ns
    report = (run_dir / "report.md").stat().st_mtime_ns
    lines = []
    run_pipeline(run["config"], say=lines.append)
    assert all("skipped" in lines_about(lines, p)[0] for p in PHASES)
    assert (run_dir / "report.md").stat().st_mtime_ns == report
    (run_dir / "eval" / "random.json").unlink()
    (run_dir / "phases" / "eval.json").unlink()
    lines = []
    run_pipeline(run["config"], say=lines.append)
    assert (run_dir / "eval" / "random.json").is_file()
    assert (run_dir / "eval" / "oracle.json").stat().st_mtime_ns == oracle
    assert "skipped" in lines_about(lines, "latency")[0]
    assert "done in" in lines_about(lines, "report")[-1]  # an earlier phase ran: the report is rewritten


def copy_of(run, tmp_path) -> tuple[Path, list[str]]:
    """A copy of the finished run directory to change, and the overrides that point at it."""
    copy = tmp_path / "copy"
    shutil.copytree(run["dir"], copy)
    return copy, overrides(copy)


def test_a_setting_a_finished_phase_ran_with_is_refused_until_that_phase_is_redone(run, tmp_path):
    """Issue 35, defect 6: the changed value was recorded in config.toml though no phase ran with it."""
    copy, sets = copy_of(run, tmp_path)
    recorded = (copy / "config.toml").read_bytes()
    for change, phases, redo in (("mrl.optim.lr=0.001", "mrl, dmpo", "mrl,dmpo"),
                                 ("report.histogram_bins=7", "report", "report")):
        changed = load_config(PipelineConfig, QUICKSTART, [*sets, change])
        key = change.split("=")[0]
        message = (rf"{re.escape(key)} \(.* -> .*\) changed since {re.escape(str(copy / 'config.toml'))} was "
                   rf"recorded, but phase\(s\) {phases} already ran with the old value: set it back, or redo them "
                   rf"and what depends on them: rxmrl run CONFIG --redo {redo}")
        with pytest.raises(ConfigError, match=f"^{message}$"):
            run_pipeline(changed, ["report"], say=lambda line: None)
        assert (copy / "config.toml").read_bytes() == recorded
    lines = []
    run_pipeline(changed, ["report"], say=lines.append, redo=["report"])
    assert "redo: report invalidated (outputs deleted); they run again" in lines
    assert "histogram_bins = 7" in (copy / "config.toml").read_text()


def test_redo_invalidates_the_phase_and_every_phase_built_on_it_and_finishes_after_a_kill(run, tmp_path):
    from rxmrl.pipeline.phases import REDO_LEDGER, invalidate

    copy, _ = copy_of(run, tmp_path)
    assert invalidate(copy, ["mrl"]) == ["mrl", "eval", "retention", "audit", "latency", "report"]
    assert sorted(p.stem for p in (copy / "phases").glob("*.json")) == ["baseline", "data", "dmpo", "supervised"]
    assert not any((copy / name).exists() for name in ("mrl", "eval", "retention", "audit", "latency.json",
                                                       "report.md", "plots"))
    assert (copy / "dmpo" / "final").is_dir() and not [p for p in copy.iterdir() if ".tmp-" in p.name]
    (copy / "phases" / REDO_LEDGER).write_text('{"phases": ["baseline"]}')  # a kill in the middle of a redo
    assert invalidate(copy, []) == ["baseline", "eval", "latency", "report"]
    assert not (copy / "baseline").exists() and not (copy / "phases" / REDO_LEDGER).exists()


def test_a_model_retrained_by_hand_is_never_reported_with_the_old_numbers(run, tmp_path):
    """Issue 35, defect 5: with phases/mrl.json and mrl/ deleted (the old advice), MRL trained again but eval
    was "finished earlier, skipped" and report.md paired the new model with the old numbers."""
    copy, sets = copy_of(run, tmp_path)
    shutil.rmtree(copy / "mrl")
    (copy / "phases" / "mrl.json").unlink()
    before = (copy / "eval" / "mrl.json").stat().st_mtime_ns
    lines = []
    run_pipeline(load_config(PipelineConfig, QUICKSTART, sets), ["mrl", "eval", "report"], say=lines.append)
    assert "mrl finished after it; redoing it" in lines_about(lines, "eval")[0]
    assert (copy / "eval" / "mrl.json").stat().st_mtime_ns != before
    assert json.loads((copy / "eval" / "mrl.json").read_text())["agent"] == str(copy / "mrl" / "final")
    assert "done in" in lines_about(lines, "report")[-1]  # invalidated with eval, written again
