"""``rxmrl run``: the phases of an experiment in order, each resumable, each timed.

Phases (each a function of the resolved :class:`~rxmrl.pipeline.config.PipelineConfig`):

    data        tokenizer + the evaluation episodes load (fails in seconds, not after training)
    supervised  the four warm-start stages            -> RUN_DIR/warmstart/stage-N/
    mrl         the MRL curriculum from stage 4        -> RUN_DIR/mrl/ (metrics.jsonl, final/, comparison.json)
    dmpo        DMPO on the same curriculum, when [dmpo] is enabled -> RUN_DIR/dmpo/ (the same files)
    baseline    the stateless LLM, SFT with TRL        -> RUN_DIR/baseline/
    eval        warm start, MRL (DMPO), baseline, oracle, random on the same episodes -> RUN_DIR/eval/MODEL.json
    retention   recall with the reference conversation in memory, vs reset memory, MRL vs warm start
                                                       -> RUN_DIR/retention/retention.json
    audit       the reward audit of the presets trained and evaluated with -> RUN_DIR/audit/
    latency     per-turn latency, RxT vs stateless     -> RUN_DIR/latency.json
    report      tables and plots from those files      -> RUN_DIR/report.md, RUN_DIR/plots/*.png

A finished phase leaves ``RUN_DIR/phases/PHASE.json`` (its wall time over every attempt, and outputs);
re-running the same command skips finished phases and resumes the interrupted one (the trainers resume
from their own checkpoints, the evaluation from the models already written). ``RUN_DIR/timings.json``
holds every finished phase's wall time and ``RUN_DIR/config.toml`` the resolved configuration.

To redo a phase: ``rxmrl run CONFIG --redo mrl`` (also every phase built on it: eval, retention, audit,
latency, report). A setting that a finished phase ran with cannot change without redoing it, and a phase
built on one that finished after it is redone by itself (:mod:`rxmrl.pipeline.phases`).

The whole configuration is checked before the first phase starts (:func:`check_config`), and the run
holds ``RUN_DIR``'s lock from start to end, so a second ``rxmrl run`` on it is refused at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rxmrl.pipeline.config import PipelineConfig
from rxmrl.pipeline.layout import CONFIG_FILE, PHASE_TITLES, TIMINGS_FILE, model_dirs, read_timings
from rxmrl.pipeline.phases import (MODEL_PHASES, PHASES, attempts_path, check_phase_names, invalidate, marker_path,
                                   refuse_changes_under_results, stale_because)
from rxmrl.runtime import RunLock, WallClock, torch_threads, write_json, write_text

# ------------------------------------------------------------------------------------------ phases


def phase_data(config: PipelineConfig) -> dict[str, Any]:
    from rxmrl.data import load_curriculum
    from rxmrl.training.supervised import load_tokenizer

    tokenizer = load_tokenizer(config.supervised.data)
    ev = config.eval
    episodes = load_curriculum(ev.source, config=ev.curriculum_config, split=ev.split,
                               num_episodes=ev.num_episodes, seed=config.supervised.data.seed).episodes
    if ev.num_episodes is not None and len(episodes) < ev.num_episodes:
        raise ValueError(f"eval.num_episodes={ev.num_episodes}, but {ev.curriculum_config}/{ev.split} of "
                         f"{ev.source!r} holds {len(episodes)}")
    info = {"tokenizer_vocab_size": tokenizer.vocab_size, "eval_source": ev.source,
            "eval_config": ev.curriculum_config, "eval_split": ev.split, "eval_episodes": len(episodes)}
    write_json(Path(config.run_dir) / "data.json", info)
    return info


def phase_supervised(config: PipelineConfig) -> dict[str, Any]:
    from rxmrl.training.supervised import run_supervised

    reports = run_supervised(config.supervised)
    return {"stages": {r.stage: {"seconds": r.seconds, "steps": r.steps, "final_loss": r.final_loss}
                       for r in reports}}


def phase_mrl(config: PipelineConfig) -> dict[str, Any]:
    return train_curriculum(config.mrl)


def phase_dmpo(config: PipelineConfig) -> dict[str, Any]:
    if not config.dmpo.enabled:
        return {"skipped": "dmpo.enabled = false"}
    return train_curriculum(config.dmpo_run())


def train_curriculum(run) -> dict[str, Any]:
    """``run_mrl`` of an MRL or DMPO run config; what its phase marker records."""
    from rxmrl.training.mrl.run import run_mrl

    result, _ = run_mrl(run)
    return {"iterations": result.iterations, "timings": result.timings,
            "final": str(result.final_dir), "comparison": str(Path(run.run_dir) / "comparison.json")}


def phase_baseline(config: PipelineConfig) -> dict[str, Any]:
    from rxmrl.baseline.train import train_baseline
    from rxmrl.tokenizer import RxTokenizer

    tokenizer = RxTokenizer.load(model_dirs(config.run_dir)["warm_start"])  # the same tokenizer as RxT
    result = train_baseline(config.baseline, tokenizer=tokenizer)
    return {"parameters": result.parameters, "rxt_parameters": result.rxt_parameters,
            "loss_before": result.loss_before, "loss_after": result.loss_after}


def evaluation_env(config: PipelineConfig, tokenizer, teacher_forcing: bool = False):
    """The batched env of ``[eval]``'s episodes (same order, same reward) that the eval and retention phases
    play; ``teacher_forcing``: the reference answers are written into memory (the retention protocol)."""
    from rxmrl.envs import BatchedMrlEnv

    ev = config.eval
    return BatchedMrlEnv(ev.batch_size, ev.source, ev.steps, ev.split, config=ev.curriculum_config,
                         num_episodes=ev.num_episodes, data_seed=config.supervised.data.seed, reward=ev.reward,
                         similarity=ev.similarity, tokenizer=tokenizer, order="sequential", seed=config.seed,
                         device=ev.resolved_device(), saved_data=ev.saved_data, teacher_forcing=teacher_forcing)


def phase_eval(config: PipelineConfig) -> dict[str, Any]:
    """Every model on one env (same episodes, same order, same reward); one JSON per model, so a killed
    evaluation resumes at the first model without a file."""
    from rxmrl.evaluation import evaluate, load_agent
    from rxmrl.model.sampling import describe_sampling
    from rxmrl.tokenizer import RxTokenizer

    ev, dirs = config.eval, model_dirs(config.run_dir)
    tokenizer = RxTokenizer.load(dirs["warm_start"])
    device = ev.resolved_device()
    env = evaluation_env(config, tokenizer)
    episodes = [e for pool in env.sampler.pools.values() for e in pool]
    sampling = ev.sampling.build()
    # not "reward": the summary's reward statistics use that key
    meta = {"config": ev.curriculum_config, "split": ev.split,
            "scoring": f"{ev.reward} ({ev.similarity}, {ev.saved_data})", "sampling": describe_sampling(sampling)}
    written = {}
    for name in ev.models:
        path = Path(config.run_dir) / "eval" / f"{name}.json"
        if not path.is_file():
            agent = load_agent(dirs[name], episodes, tokenizer=tokenizer, seed=config.seed,
                               max_new_tokens=ev.max_new_tokens, device=device, sampling=sampling)
            result = evaluate(agent, env, ev.num_episodes, seed=config.seed, meta=meta)
            write_json(path, evaluation_record(name, dirs[name], result))
            reward = result.reward()
            final = result.final_question_recall()
            print(f"  {name}: reward {reward.mean:.2f} [{reward.ci_low:.2f}, {reward.ci_high:.2f}], "
                  f"fact recall {result.recall().mean:.3f}, held facts {result.held_recall().mean:.3f}"
                  + ("" if final is None else f", final recall {final.mean:.3f}") + f" ({result.seconds:.1f} s)",
                  flush=True)
        written[name] = str(path)
    return {"results": written}


def evaluation_record(name: str, spec: str, result) -> dict[str, Any]:
    """What the report reads: the summary (means, intervals, ranges) and the per-episode values behind it."""
    return {"model": name, "agent": spec, "summary": result.summary(),
            "episode_rewards": result.episode_rewards.tolist(),
            "episode_fact_recall": result.episode_fact_recall.tolist(),
            "episode_held_fact_recall": result.episode_held_fact_recall.tolist(),
            "episode_final_recall": result.episode_final_recall.tolist(),  # NaN (null): no final question
            "step_rewards": result.step_rewards.tolist()}


def audit_presets(config: PipelineConfig) -> list[str]:
    """The presets the audit phase scores with: ``audit.presets``, else those the run trains and evaluates with."""
    return list(config.audit.presets) or list(dict.fromkeys([config.mrl.reward.preset, config.eval.reward]))


def phase_retention(config: PipelineConfig) -> dict[str, Any]:
    """Recall with the reference conversation written into memory: each RxT model with and without memory,
    and MRL paired against its warm start, on the evaluation's episodes (greedy answers)."""
    if not config.retention.enabled:
        return {"skipped": "retention.enabled = false"}
    from rxmrl.evaluation.retention import measure_retention
    from rxmrl.model import ReactiveTransformer
    from rxmrl.model.sampling import describe_sampling
    from rxmrl.tokenizer import RxTokenizer

    ev, dirs = config.eval, model_dirs(config.run_dir)
    env = evaluation_env(config, RxTokenizer.load(dirs["warm_start"]), teacher_forcing=True)
    models = {name: ReactiveTransformer.from_pretrained(dirs[name], device=ev.resolved_device())
              for name in config.retention.models}
    sampling = ev.sampling.build()
    meta = {"config": ev.curriculum_config, "split": ev.split, "scoring": f"{ev.reward} ({ev.similarity})",
            "sampling": describe_sampling(sampling)}
    result = measure_retention(models, env, ev.num_episodes, baseline=config.retention.models[0],
                               max_new_tokens=ev.max_new_tokens, sampling=sampling, seed=config.seed, meta=meta)
    print(result.format_table(), flush=True)
    folder = Path(config.run_dir) / "retention"
    write_text(folder / "retention.txt", result.format_table() + "\n")
    path = write_json(folder / "retention.json", result.summary())
    return {"path": str(path)}


def phase_audit(config: PipelineConfig) -> dict[str, Any]:
    """The reward audit on the evaluation's episodes: scripted cases and the RxT models with vs without memory."""
    if not config.audit.enabled:
        return {"skipped": "audit.enabled = false"}
    from rxmrl.evaluation.audit import AuditSettings, audit_rewards, write_audit
    from rxmrl.tokenizer import RxTokenizer

    ev, dirs = config.eval, model_dirs(config.run_dir)
    labels = {"warm_start": "warm start", "mrl": "MRL", "dmpo": "DMPO"}
    settings = AuditSettings(
        presets=audit_presets(config), similarity=ev.similarity, saved_data=ev.saved_data, source=ev.source,
        config=ev.curriculum_config, split=ev.split, num_episodes=ev.num_episodes,
        data_seed=config.supervised.data.seed, batch_size=ev.batch_size,
        checkpoints={labels[m]: dirs[m] for m in config.audit.models}, max_new_tokens=ev.max_new_tokens,
        seed=config.seed, device=ev.resolved_device(), sampling=ev.sampling.build())
    audit = audit_rewards(settings, RxTokenizer.load(dirs["warm_start"]))
    print(audit.format_table(), flush=True)
    return write_audit(audit, Path(config.run_dir) / "audit")


def phase_latency(config: PipelineConfig) -> dict[str, Any]:
    if not config.latency.enabled:
        return {"skipped": "latency.enabled = false"}
    import dataclasses

    from rxmrl.baseline.latency import format_latency_table, latency_conversation, measure_latency
    from rxmrl.baseline.train import load_baseline
    from rxmrl.model import ReactiveTransformer

    dirs, device = model_dirs(config.run_dir), config.eval.resolved_device()
    with torch_threads(config.latency.threads):
        stateless, tokenizer = load_baseline(dirs["baseline"], device)
        rxt = ReactiveTransformer.from_pretrained(dirs["mrl"], device=device)
        rows = measure_latency(stateless, rxt, tokenizer, latency_conversation(config.latency.turns),
                               repeats=config.latency.repeats)
    print(format_latency_table(rows), flush=True)
    path = write_json(Path(config.run_dir) / "latency.json", [dataclasses.asdict(r) for r in rows])
    return {"rows": len(rows), "path": str(path)}


def phase_report(config: PipelineConfig) -> dict[str, Any]:
    from rxmrl.pipeline.report import write_report

    path = write_report(config.run_dir, config)
    return {"report": str(path)}


PHASE_FUNCTIONS: dict[str, Callable[[PipelineConfig], dict[str, Any]]] = {
    "data": phase_data, "supervised": phase_supervised, "mrl": phase_mrl, "dmpo": phase_dmpo,
    "baseline": phase_baseline,
    "eval": phase_eval, "retention": phase_retention, "audit": phase_audit, "latency": phase_latency,
    "report": phase_report}


# ------------------------------------------------------------------------------------------ driver


def run_pipeline(config: PipelineConfig, phases: list[str] | None = None, say: Callable[[str], None] = print,
                 redo: list[str] | None = None) -> dict[str, float]:
    """Run ``phases`` (default: all, in order), skipping those already finished in ``run_dir``; ``redo``:
    invalidate these phases and every phase built on them first (:func:`rxmrl.pipeline.phases.invalidate`).

    Returns the wall seconds of every finished phase (also in ``RUN_DIR/timings.json``). A finished phase
    built on one that finished after it (the report after any earlier phase ran) is redone, so no result is
    stale.
    """
    from rxmrl.config import changed_keys, format_config, save_config, validate

    validate(config)
    config = config.resolved()
    check_phase_names(phases or (), "--phases")
    check_phase_names(redo or (), "--redo")
    chosen = list(PHASES) if phases is None else [p for p in PHASES if p in phases]
    run_dir = Path(config.run_dir)
    changed = changed_keys(run_dir / CONFIG_FILE, config)
    check_config(config, changed)
    refuse_changes_under_results(run_dir, run_dir / CONFIG_FILE, config, redo or ())
    check_phase_inputs(config, chosen)
    with RunLock(run_dir) as lock:
        if lock.took_over:
            say(f"note: {run_dir} was locked by process {lock.took_over.get('pid')} on "
                f"{lock.took_over.get('host')}, which is no longer running; continuing its run")
        redone = invalidate(run_dir, redo or ())
        if redone:
            say(f"redo: {', '.join(redone)} invalidated (outputs deleted); they run again")
        if changed:
            say(f"note: {run_dir / CONFIG_FILE} of the earlier run differs in {', '.join(changed)}; no phase has "
                "run with the old values of these, or a resume applies them")
        save_config(config, run_dir / CONFIG_FILE)
        say(format_config(config))
        with torch_threads(config.torch_threads):
            _run_phases(config, chosen, say)
    return read_timings(run_dir)


def check_config(config: PipelineConfig, changed: list[str]) -> None:
    """What the sections' own checks cannot see, refused before any phase starts (``ConfigError``): a DMPO
    run that ``[mrl]`` + ``[dmpo]`` cannot make, or a model size changed under a run directory that already
    holds supervised stages of the old one."""
    from rxmrl.config import ConfigError, validate

    if config.dmpo.enabled:
        try:
            validate(config.dmpo_run(), "mrl")
        except ConfigError as error:
            raise ConfigError(f"the [dmpo] run ([mrl] with mrl.algorithm = dmpo): {error}") from error
    warm = Path(config.supervised.run_dir)
    started = sorted(p.name for p in warm.glob("stage-*") if p.is_dir()) if warm.is_dir() else []
    resized = [key for key in changed if key.startswith("supervised.model.")]
    if resized and started:
        raise ConfigError(f"{', '.join(resized)} changed, but {warm} already holds {', '.join(started)} of the "
                          "earlier model size: set it back, or use a new run_dir")


def phase_inputs(config: PipelineConfig) -> dict[str, set[str]]:
    """The earlier phases whose models each phase reads (the models its section names, and the warm start's
    tokenizer)."""
    def models(names) -> set[str]:
        return {MODEL_PHASES[name] for name in names if name in MODEL_PHASES} | {"supervised"}

    return {"mrl": {"supervised"}, "dmpo": {"supervised"} if config.dmpo.enabled else set(),
            "baseline": {"supervised"}, "eval": models(config.eval.models),
            "retention": models(config.retention.models) if config.retention.enabled else set(),
            "audit": models(config.audit.models) if config.audit.enabled else set(),
            "latency": {"baseline", "mrl"} if config.latency.enabled else set()}


def check_phase_inputs(config: PipelineConfig, chosen: list[str]) -> None:
    """Refuse ``--phases`` that would read a model no phase has made (``--phases eval`` on a fresh run
    directory), naming the missing phase, before anything runs (``ConfigError``)."""
    from rxmrl.config import ConfigError

    run_dir = Path(config.run_dir)
    for phase in chosen:
        for needed in sorted(phase_inputs(config).get(phase, set()), key=PHASES.index):
            before = chosen[:chosen.index(phase)]
            if needed not in before and not marker_path(run_dir, needed).is_file():
                raise ConfigError(f"--phases {','.join(chosen)}: phase {phase} reads what phase {needed} makes, "
                                  f"and {needed} has not finished in {run_dir} (no {marker_path(run_dir, needed)}): "
                                  f"add {needed} to --phases, or leave --phases out to run every phase")


def _run_phases(config: PipelineConfig, chosen: list[str], say: Callable[[str], None]) -> None:
    run_dir = Path(config.run_dir)
    started = time.perf_counter()
    for number, phase in enumerate(chosen, start=1):
        tag = f"[{number}/{len(chosen)}] {phase} ({PHASE_TITLES[phase]})"
        marker = marker_path(run_dir, phase)
        newer = stale_because(run_dir, phase)
        if newer:
            invalidate(run_dir, [phase])
            say(f"{tag}: {', '.join(newer)} finished after it; redoing it")
        elif marker.is_file():
            seconds = json.loads(marker.read_text(encoding="utf-8"))["seconds"]
            say(f"{tag}: finished earlier in {seconds:.1f} s, skipped")
            continue
        say(f"{tag}: starting")
        with WallClock(attempts_path(run_dir, phase)) as clock:
            outputs = PHASE_FUNCTIONS[phase](config)
            attempts = len(clock.attempts)
            seconds = clock.seconds()
            write_json(marker, {"phase": phase, "seconds": seconds, "attempts": attempts, "finished": time.time(),
                                "outputs": outputs})
            clock.finish()
        timings = read_timings(run_dir)
        write_json(run_dir / TIMINGS_FILE, {**timings, "total": sum(timings.values())})
        say(f"{tag}: done in {seconds:.1f} s")
        if phase == "report":
            say(f"report: {run_dir / 'report.md'}")
    timings = read_timings(run_dir)
    write_json(run_dir / TIMINGS_FILE, {**timings, "total": sum(timings.values())})  # also after a kill before it
    say(f"run {run_dir}: {time.perf_counter() - started:.1f} s this time; phases "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
