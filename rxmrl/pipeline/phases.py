"""The phases of ``rxmrl run`` as a graph: what each one reads and writes, what it is built on, and how to redo one.

Every rule about finished phases is derived from three declarations, never from a list per phase:

    DEPENDS_ON   the phases whose outputs a phase reads (eval reads the models of supervised, mrl, dmpo,
                 baseline; report reads everything)
    READS        the settings (key prefixes of the resolved config) its results depend on
    OUTPUTS      what it writes under ``RUN_DIR``, besides its marker ``phases/PHASE.json``

From them:

* **Redo**: ``rxmrl run CONFIG --redo mrl`` invalidates mrl and every phase built on it (:func:`dependents`:
  eval, retention, audit, latency, report), then runs them again. Invalidating a phase moves its outputs
  aside and deletes them and its marker; a ledger ``phases/redo.json`` is written first, so a kill half way
  is finished by the next run, whatever its arguments.
* **Stale results**: a finished phase with a dependency that finished after it (redone, or its marker and
  outputs deleted by hand) is invalidated and run again when its turn comes, so ``report.md`` never mixes
  one model with another's numbers.
* **Changed settings**: a setting read by a finished phase may not change unless that phase is redone; a
  setting read by an interrupted phase may change only if a resume can apply it (:mod:`rxmrl.resume`).
  Otherwise the run is refused before any work, naming the keys and the ``--redo`` that would apply them, so
  the recorded ``config.toml`` only ever says what the phases ran with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from rxmrl.config import ConfigError, changed_values
from rxmrl.resume import describe, resumable
from rxmrl.runtime import remove_path, temporary_path, write_json

PHASES: tuple[str, ...] = ("data", "supervised", "mrl", "dmpo", "baseline", "eval", "retention", "audit",
                           "latency", "report")
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "data": (),
    "supervised": ("data",),
    "mrl": ("supervised",),  # starts from the stage-4 warm start
    "dmpo": ("supervised",),
    "baseline": ("supervised",),  # the warm start's tokenizer
    "eval": ("data", "supervised", "mrl", "dmpo", "baseline"),
    "retention": ("supervised", "mrl", "dmpo"),
    "audit": ("supervised", "mrl", "dmpo"),
    "latency": ("mrl", "baseline"),
    "report": ("data", "supervised", "mrl", "dmpo", "baseline", "eval", "retention", "audit", "latency"),
}
# the phase that writes each model a later phase may read (by its name in eval/retention/audit.models)
MODEL_PHASES = {"warm_start": "supervised", "mrl": "mrl", "dmpo": "dmpo", "baseline": "baseline"}
READS: dict[str, tuple[str, ...]] = {
    "data": ("supervised.data", "eval.source", "eval.steps", "eval.strategy", "eval.split", "eval.num_episodes"),
    "supervised": ("seed", "supervised"),
    "mrl": ("mrl",),  # resolved: its seed, warm start and validation reward are in it
    "dmpo": ("mrl", "dmpo"),
    "baseline": ("baseline",),
    "eval": ("seed", "eval", "supervised.data.seed"),  # the run's seed orders episodes and samples answers
    "retention": ("seed", "eval", "retention", "supervised.data.seed"),
    "audit": ("seed", "eval", "audit", "mrl.reward.preset", "supervised.data.seed"),
    "latency": ("latency", "eval.device"),
    "report": ("report",),
}
# where and with how many threads: no phase's result depends on them (the sections' paths follow run_dir)
OPERATIONAL = ("run_dir", "torch_threads", "supervised.run_dir", "mrl.run_dir", "mrl.init", "baseline.output_dir")
OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": ("data.json",), "supervised": ("warmstart",), "mrl": ("mrl",), "dmpo": ("dmpo",),
    "baseline": ("baseline",), "eval": ("eval",), "retention": ("retention",), "audit": ("audit",),
    "latency": ("latency.json",), "report": ("report.md", "plots"),
}
REDO_LEDGER = "redo.json"


# ------------------------------------------------------------------------------------------ the graph


def dependents(phases: Iterable[str]) -> list[str]:
    """``phases`` and every phase built on them, directly or not, in phase order."""
    chosen = set(phases)
    for phase in PHASES:  # DEPENDS_ON points backwards in PHASES: one pass closes the set
        if chosen & set(DEPENDS_ON[phase]):
            chosen.add(phase)
    return [p for p in PHASES if p in chosen]


def readers(key: str) -> list[str]:
    """The phases whose results depend on setting ``key`` (an unreadable record: every phase)."""
    if key.startswith("(all"):
        return list(PHASES)
    if key in OPERATIONAL:
        return []
    return [p for p in PHASES if any(key == prefix or key.startswith(prefix + ".") for prefix in READS[p])]


def check_phase_names(names: Collection[str], option: str) -> None:
    unknown = sorted(set(names) - set(PHASES))
    if unknown:
        raise ConfigError(f"{option} names unknown phase(s) {unknown}; expected some of {list(PHASES)}")


# ------------------------------------------------------------------------------------------ state on disk


def marker_path(run_dir: Path, phase: str) -> Path:
    return Path(run_dir) / "phases" / f"{phase}.json"


def attempts_path(run_dir: Path, phase: str) -> Path:
    """The phase's wall-clock ledger: present from its start to its end (so: started, not finished)."""
    return Path(run_dir) / "phases" / "attempts" / f"{phase}.json"


def finished_at(run_dir: Path, phase: str) -> float | None:
    """When ``phase`` finished (its marker's time), or None."""
    path = marker_path(run_dir, phase)
    if not path.is_file():
        return None
    return float(json.loads(path.read_text(encoding="utf-8")).get("finished", 0.0))


def stale_because(run_dir: Path, phase: str) -> list[str]:
    """The dependencies of finished ``phase`` that finished after it (its results were built on older ones)."""
    finished = finished_at(run_dir, phase)
    if finished is None:
        return []
    return [d for d in DEPENDS_ON[phase] if (finished_at(run_dir, d) or 0.0) > finished]


# ------------------------------------------------------------------------------------------ redo


def pending_redo(run_dir: Path) -> list[str]:
    """Phases an interrupted ``--redo`` had still to invalidate."""
    path = Path(run_dir) / "phases" / REDO_LEDGER
    return list(json.loads(path.read_text(encoding="utf-8"))["phases"]) if path.is_file() else []


def invalidate(run_dir: Path, phases: Iterable[str]) -> list[str]:
    """Delete the outputs and markers of ``phases`` and of everything built on them (the ledger first, so a
    kill part way is completed by the next run); returns what was invalidated."""
    run_dir = Path(run_dir)
    chosen = dependents([*phases, *pending_redo(run_dir)])
    if not chosen:
        return []
    ledger = write_json(run_dir / "phases" / REDO_LEDGER, {"phases": chosen})
    for phase in chosen:
        _discard_outputs(run_dir, phase)
    os.unlink(ledger)
    return chosen


def _discard_outputs(run_dir: Path, phase: str) -> None:
    """Move the phase's outputs aside in one rename each (a reader never sees half of them), then delete them
    with its marker and wall-clock ledger (a redo counts its time afresh)."""
    for name in OUTPUTS[phase]:
        path = run_dir / name
        if path.exists() or path.is_symlink():
            aside = temporary_path(path)  # a ".tmp-" name: remove_stale deletes it if this process dies now
            os.replace(path, aside)
            remove_path(aside)
    for path in (marker_path(run_dir, phase), attempts_path(run_dir, phase)):
        remove_path(path)


# ------------------------------------------------------------------------------------------ changed settings


def refuse_changes_under_results(run_dir: Path, recorded: Path, config: Any, redo: Collection[str]) -> None:
    """Refuse (``ConfigError``) a setting changed since ``recorded`` that a phase already ran with: a finished
    phase (any change), or an interrupted one (a change its resume cannot apply) -- unless ``redo``
    invalidates that phase. Lists the ``--redo`` that would apply the change."""
    redone = set(dependents([*redo, *pending_redo(run_dir)]))
    changed = changed_values(recorded, config)
    blocked: dict[str, tuple[Any, Any]] = {}
    phases: list[str] = []
    for key, values in changed.items():
        ran = [p for p in readers(key) if p not in redone and _ran_with(run_dir, p, key)]
        if ran:
            blocked[key] = values
            phases += [p for p in ran if p not in phases]
    if blocked:
        roots = [p for p in phases if not any(p in dependents([o]) for o in phases if o != p)]
        raise ConfigError(f"{describe(blocked)} changed since {recorded} was recorded, but phase(s) "
                          f"{', '.join(phases)} already ran with the old value: set it back, or redo them and what "
                          f"depends on them: rxmrl run CONFIG --redo {','.join(roots)}")


def _ran_with(run_dir: Path, phase: str, key: str) -> bool:
    if finished_at(run_dir, phase) is not None:
        return True
    return attempts_path(run_dir, phase).is_file() and not resumable(key)
