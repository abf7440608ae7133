"""``report.md``: tables and plots of a run, every number read from the run directory's files.

Sources: ``eval/MODEL.json`` (reward range and fact recall per model), ``audit/audit.json`` (the reward
audit), ``latency.json`` (per-turn latency),
``mrl/metrics.jsonl`` (reward over MRL training), ``mrl/comparison.json`` and ``dmpo/comparison.json`` (MRL
and DMPO vs warm start per stage),
``phases/*.json`` and ``warmstart/stage-N/stage.json`` (wall times). Nothing is recomputed here, so the
report and the files cannot disagree; a missing file leaves its section out with a note.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rxmrl.evaluation.published import PUBLISHED_NOTE, PUBLISHED_ROWS
from rxmrl.pipeline.config import MODELS, PipelineConfig
from rxmrl.pipeline.plots import plot_fact_recall, plot_mrl_rewards, plot_reward_by_step, plot_reward_histograms
from rxmrl.pipeline.layout import model_dirs, read_timings
from rxmrl.runtime import write_text

LABELS = {"warm_start": "RxT warm start (stage 4)", "mrl": "RxT after MRL", "dmpo": "RxT after DMPO", "baseline": "stateless LLM baseline",
          "oracle": "oracle (reference answers)", "random": "random (other episodes' answers)"}
SHORT_LABELS = {"warm_start": "warm start", "mrl": "MRL", "dmpo": "DMPO", "baseline": "stateless", "oracle": "oracle",
                "random": "random"}


MRL_PLOT = "Reward per curriculum stage over MRL training"


def mrl_plot_caption(config: PipelineConfig) -> str:
    """What the MRL training curve shows: which reward, and how its answers were drawn."""
    from rxmrl.model.sampling import describe_sampling
    from rxmrl.training.mrl.validation import training_reward_label

    mrl = config.mrl
    rollouts, validation = (describe_sampling(s.build()) for s in (mrl.mrl.sampling, mrl.mrl.eval_sampling))
    return (f"Lines: the {training_reward_label(mrl)} of each rollout, answers {rollouts} (`mrl.sampling`); stars: "
            f"the same reward on each epoch's validation episodes, answers {validation} (`mrl.eval_sampling`).")


def load_results(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``eval/MODEL.json`` of every model that has one, in the fixed model order."""
    folder = Path(run_dir) / "eval"
    return {name: json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            for name in MODELS if (folder / f"{name}.json").is_file()}


def format_interval(stat: dict[str, Any] | None, digits: int) -> str:
    """``mean [low, high]`` of a summary stat (``n/a`` when the JSON holds null)."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    low, high = stat.get("ci_low"), stat.get("ci_high")
    ci = "" if low is None or high is None else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{stat['mean']:.{digits}f}{ci}"


def format_number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def latency_by_model(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds of the last measured turn: RxT rows (same architecture) and the stateless baseline."""
    if not rows:
        return {}
    last = rows[-1]
    return {"warm_start": last["rxt_seconds"] * 1e3, "mrl": last["rxt_seconds"] * 1e3, "dmpo": last["rxt_seconds"] * 1e3,
            "baseline": last["stateless_seconds"] * 1e3}


def markdown_table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: the header, the alignment row (``---`` or ``---:`` per column), one line per row."""
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join(align) + "|", *map(line, rows)])


def has_final_recall(summaries: list[dict[str, Any]]) -> bool:
    """Whether any summary holds a final recall (null or absent: cumulative episodes, or an older run)."""
    return any(summary.get("final_recall") for summary in summaries)


def final_recall_note(summaries: list[dict[str, Any]]) -> list[str]:
    """Lines under a table: what the final recall is, or that these episodes have none (null in every summary);
    nothing for files written before it was recorded."""
    if has_final_recall(summaries):
        return ["", "*Final recall*: recall on the long-range final question alone, the one about the first "
                    "interaction after every distractor turn (the fact recall averages it with those turns)."]
    if all("final_recall" in summary for summary in summaries):
        return ["", "*Final recall: none, these episodes are cumulative (no long-range final question).*"]
    return []


def results_table(results: dict[str, dict[str, Any]], latency: list[dict[str, Any]]) -> str:
    """Our rows: reward mean [95% CI], min, max, fact recall, recall of held facts and (long-range episodes)
    final recall [95% CI], latency of the last turn."""
    turn = f"turn {len(latency)}" if latency else "n/a"
    ms = latency_by_model(latency)
    summaries = [record["summary"] for record in results.values()]
    final = has_final_recall(summaries)
    header = ["model", "reward mean [95% CI]", "min", "max", "fact recall [95% CI]", "held facts [95% CI]",
              *(["final recall [95% CI]"] if final else []), f"latency, {turn} (ms)"]
    rows = []
    for name, record in results.items():
        summary = record["summary"]
        reward = summary["reward"]
        rows.append([LABELS[name], format_interval(reward, 2), format_number(reward["min"], 2),
                     format_number(reward["max"], 2), format_interval(summary["fact_recall"], 3),
                     format_interval(summary["held_fact_recall"], 3) if "held_fact_recall" in summary else "–",
                     *([format_interval(summary.get("final_recall"), 3)] if final else []),
                     format_number(ms.get(name), 1) if name in ms else "–"])
    table = markdown_table(header, ["---"] + ["---:"] * (len(header) - 1), rows)
    return "\n".join([table, *final_recall_note(summaries)])


def published_table() -> str:
    lines = [f"*{PUBLISHED_NOTE}.*", "", "| model (published) | reward mean | min | max |", "|---|---:|---:|---:|"]
    lines += [f"| {r.model} | {r.reward_mean:.1f} | {r.reward_min:.1f} | {r.reward_max:.1f} |" for r in PUBLISHED_ROWS]
    return "\n".join(lines)


def comparison_table(comparison: dict[str, Any], name: str = "MRL") -> str:
    """MRL (or DMPO: ``name``) vs warm start on each curriculum stage's validation episodes
    (``mrl/comparison.json``, ``dmpo/comparison.json``): the training reward, then the paired difference under
    each validation preset (``reward/<preset>``), then fact recall."""
    presets = list(comparison["stages"][0].get("differences", {})) if comparison["stages"] else []
    similarity = comparison.get("validation_similarity", "")
    header = ["stage", "steps", "strategy", "training reward: warm start", name, "difference [95% CI]",
              f"{name} without memory",
              *(f"`{key[len('reward/'):]}` ({similarity}): {name} − warm start [95% CI]" for key in presets),
              "fact recall: warm start", name, "difference [95% CI]", f"{name}: memory − reset [95% CI]"]
    align = ["---:", "---:", "---"] + ["---:"] * (8 + len(presets))
    rows = []
    for row in comparison["stages"]:
        recall = row.get("fact_recall_difference")  # absent in runs written before it was recorded
        gain = row.get("mrl_memory_recall_gain")
        rows.append([str(row["stage"]), str(row["steps"]), row["strategy"], f"{row['warm_start']['reward']:.3f}",
                     f"{row['mrl']['reward']:.3f}", _signed_interval(row["difference"]),
                     f"{row['mrl_no_memory']['reward']:.3f}",
                     *(_signed_interval(row["differences"][key]) for key in presets),
                     f"{row['warm_start']['fact_recall']:.3f}", f"{row['mrl']['fact_recall']:.3f}",
                     _signed_interval(recall) if recall else "–", _signed_interval(gain) if gain else "–"])
    return markdown_table(header, align, rows)


def retention_table(retention: dict[str, Any]) -> str:
    """Per RxT model: recall with memory, with a reset memory, the gap, and the gain over the baseline; then
    the same for the final recall of long-range episodes, or a line saying the episodes have none."""
    baseline = retention.get("baseline")
    scoring = next(iter(retention["models"].values()))["with_memory"].get("scoring", "")
    header = ["model", "fact recall [95% CI]", "reset memory", "memory gap [95% CI]",
              f"gain over {LABELS.get(baseline, baseline)} [95% CI]", f"reward, {scoring} [95% CI]"]
    rows = [_retention_cells(name, row, "fact_recall") + [format_interval(row["with_memory"]["reward"], 2)]
            for name, row in retention["models"].items()]
    table = markdown_table(header, ["---"] + ["---:"] * 5, rows)
    summaries = [row["with_memory"] for row in retention["models"].values()]
    if not has_final_recall(summaries):
        return "\n".join([table, *final_recall_note(summaries)])
    final_rows = [_retention_cells(name, row, "final_recall") for name, row in retention["models"].items()]
    final_table = markdown_table(["model", "final recall [95% CI]", *header[2:5]], ["---"] + ["---:"] * 4, final_rows)
    return "\n".join([table, *final_recall_note(summaries), "", final_table])


def _retention_cells(name: str, row: dict[str, Any], key: str) -> list[str]:
    """Model, ``key`` with memory and with a reset memory, the gap and the gain of one retention row (``n/a`` or
    ``–`` where absent)."""
    gain = row.get("gain")
    return [LABELS.get(name, name), format_interval(row["with_memory"].get(key), 3),
            format_interval(row["reset_memory"].get(key), 3), _signed_stat(row["gap"].get(key)),
            _signed_stat(gain.get(key)) if gain else "–"]


def _signed_stat(stat: dict[str, float] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:+.3f} [{stat['ci_low']:+.3f}, {stat['ci_high']:+.3f}]"


def comparison_note(comparison: dict[str, Any], name: str = "MRL") -> str:
    """Which rewards and which sampling the per-stage comparison used (absent in older runs: left out)."""
    parts = []
    if comparison.get("training_reward"):
        parts.append(f"The {comparison['training_reward']} is the one {name} trained with")
    if comparison.get("sampling"):
        parts.append(f"the validation answers are {comparison['sampling']} (`mrl.eval_sampling`)")
    if comparison.get("memory_writes") == "reference":
        parts.append("validation writes the reference answers into memory (`validation.teacher_forcing`: every "
                     "fact asked about is in memory)")
    return ("; ".join(parts) + ".") if parts else ""


def _signed_interval(d: dict[str, float]) -> str:
    return f"{d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]"


def timings_table(run_dir: Path) -> str:
    timings = read_timings(run_dir)
    lines = ["| phase | wall time (s) |", "|---|---:|"]
    timings.pop("report", None)  # the report is being written: its own time is in timings.json afterwards
    for phase, seconds in timings.items():
        lines.append(f"| {phase} | {seconds:.1f} |")
        if phase == "supervised":
            for stage_file in sorted(run_dir.glob("warmstart/stage-*/stage.json")):
                stage = json.loads(stage_file.read_text(encoding="utf-8"))
                lines.append(f"| &nbsp;&nbsp;stage {stage['stage']}: {stage['name']} | {stage['seconds']:.1f} |")
    lines.append(f"| total before the report | {sum(timings.values()):.1f} |")
    return "\n".join(lines)


def audit_tables(audit: dict[str, Any]) -> str:
    """The reward audit (``audit/audit.json``): mean reward [95% CI] per case and reward, then the paired gaps."""
    rewards = audit["rewards"]
    names = list(rewards)
    cases = list(next(iter(rewards.values()))["cases"])
    lines = ["| case | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for case in cases:
        lines.append(f"| {case} | " + " | ".join(format_interval(rewards[n]["cases"][case]["reward"], 2)
                                               for n in names) + " |")
    lines += ["", "| reward | paired gap | mean [95% CI] | win rate |", "|---|---|---:|---:|"]
    for name in names:
        for gap, stat in rewards[name]["gaps"].items():
            lines.append(f"| `{name}` | {gap} | {format_interval(stat, 2)} | {format_number(stat['win_rate'], 3)} |")
    return "\n".join(lines)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_plots(run_dir: Path, results: dict[str, dict[str, Any]], latency: list[dict[str, Any]] | None,
                bins: int) -> dict[str, str]:
    """The PNGs under ``RUN_DIR/plots``; returns title -> path relative to the run directory."""
    from rxmrl.baseline.latency import LatencyRow, plot_latency
    from rxmrl.training.metrics import read_metrics

    plots: dict[str, str] = {}
    folder = run_dir / "plots"
    metrics = run_dir / "mrl" / "metrics.jsonl"
    if metrics.is_file():
        comparison = _read_json(run_dir / "mrl" / "comparison.json") or {"stages": []}
        warm = {row["stage"]: row["warm_start"]["reward"] for row in comparison["stages"]}
        plot_mrl_rewards(read_metrics(metrics), folder / "mrl_reward_per_stage.png", warm)
        plots[MRL_PLOT] = "plots/mrl_reward_per_stage.png"
    if results:
        plot_reward_histograms({LABELS[n]: r["episode_rewards"] for n, r in results.items()},
                               folder / "reward_histograms.png", bins)
        plots["Per-episode reward histogram per model"] = "plots/reward_histograms.png"
        plot_reward_by_step({LABELS[n]: [s["reward"]["mean"] for s in r["summary"]["steps"]]
                             for n, r in results.items()}, folder / "reward_by_step.png")
        plots["Mean reward by step in the episode"] = "plots/reward_by_step.png"
        plot_fact_recall({SHORT_LABELS[n]: tuple(r["summary"]["fact_recall"].get(k) for k in
                                                          ("mean", "ci_low", "ci_high")) for n, r in results.items()},
                         folder / "fact_recall.png")
        plots["Fact recall per model"] = "plots/fact_recall.png"
    if latency:
        plot_latency([LatencyRow(**row) for row in latency], folder / "latency_per_turn.png")
        plots["Latency and compute per turn as the conversation grows (RxT vs stateless)"] = \
            "plots/latency_per_turn.png"
    return plots


def write_report(run_dir: str | Path, config: PipelineConfig | None = None) -> Path:
    """Write ``RUN_DIR/report.md`` and its PNGs from the files in ``run_dir``; returns the report's path."""
    from rxmrl.baseline.latency import LatencyRow, format_latency_table

    run_dir = Path(run_dir)
    results = load_results(run_dir)
    latency = _read_json(run_dir / "latency.json") or []
    bins = config.report.histogram_bins if config else 20
    plots = write_plots(run_dir, results, latency, bins)
    first = next(iter(results.values()), None)
    sections = [f"# rxmrl run: `{run_dir}`", "",
                "Resolved configuration: `config.toml`. Every number below is read from the JSON files of this "
                "run directory (`eval/*.json`, `latency.json`, `mrl/comparison.json`, `phases/*.json`)."]
    if first:
        s = first["summary"]
        sections += ["", "## Reward range", "",
                     f"{s['episodes']} episodes of `{s.get('config')}` / `{s.get('split')}` (a saved interaction, "
                     f"then {len(s['steps'])} follow-ups), the same episodes for every model; reward "
                     f"`{s.get('scoring')}` on 0-10, per episode the mean of its step rewards; bootstrap 95% "
                     f"intervals over episodes. The trained models' answers: {s.get('sampling', 'greedy')} "
                     "(`eval.sampling`). Models: " + ", ".join(f"{LABELS[n]} = `{model_dirs(run_dir)[n]}`"
                                                                    for n in results) + ".", "",
                     results_table(results, latency)]
        if config is None or config.report.published:
            sections += ["", published_table()]
    else:
        sections += ["", "*No evaluation results (`eval/*.json`) yet.*"]
    for folder, name in (("mrl", "MRL"), ("dmpo", "DMPO")):
        comparison = _read_json(run_dir / folder / "comparison.json")
        if comparison:
            note = comparison_note(comparison, name)
            sections += ["", f"## {name} against its warm start (per curriculum stage, validation episodes)", "",
                         *([note, ""] if note else []), comparison_table(comparison, name)]
    retention = _read_json(run_dir / "retention" / "retention.json")
    if retention:
        sections += ["", "## Retention: recall with the conversation in memory", "",
                     "The follow-ups of the evaluation episodes, with the reference conversation written into memory "
                     "(the model still answers every follow-up itself, " + next(iter(retention["models"].values()))["with_memory"]
                     .get("sampling", "greedy") + "), and with a memory that is never "
                     "written. Under the agent's own writes most follow-ups ask about a scene only the reference "
                     "answer told, so recall there mostly measures guessing (the *held facts* column above counts "
                     "only facts memory was given). Differences are paired over episodes, 95% bootstrap intervals.",
                     "", retention_table(retention)]
    audit = _read_json(run_dir / "audit" / "audit.json")
    if audit:
        from rxmrl.evaluation.audit import audit_plot_name

        sections += ["", "## Reward audit: how much each reward measures memory", "",
                     f"{audit['episodes']} episodes of `{audit['config']}` / `{audit['split']}`, similarity "
                     f"`{audit['similarity']}`, scored against the {audit['saved_data']}, the models' answers "
                     f"{audit.get('sampling', 'greedy')}; every case answers the "
                     "same episodes (`rxmrl reward audit`, cases in `rxmrl/evaluation/audit_cases.py`). A reward "
                     "that measures retention puts the oracle far above the wrong facts and the history dump, "
                     "gives a constant answer no more than another episode's, and pays the models for their "
                     "memory (model − reset memory).", "", audit_tables(audit)]
        for name in audit["rewards"]:
            sections += ["", f"![reward audit: {name}](audit/{audit_plot_name(name)})"]
    if latency:
        sections += ["", "## Latency per turn", "",
                     "Both models process the same tokens per turn (prompt, then the reference answer through "
                     "the KV cache); the RxT memory update runs after the answer and is timed on its own.", "",
                     format_latency_table([LatencyRow(**row) for row in latency])]
    sections += ["", "## Plots", ""]
    captions = {MRL_PLOT: mrl_plot_caption(config)} if config is not None else {}
    for title, relative in plots.items():
        caption = [captions[title], ""] if title in captions else []
        sections += [f"### {title}", "", *caption, f"![{title}]({relative})", ""]
    sections += ["## Wall time per phase", "", timings_table(run_dir), ""]
    return write_text(run_dir / "report.md", "\n".join(sections))
