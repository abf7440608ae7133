"""What a resumed run may change: the settings that take effect from the resumed step, nothing else.

A run directory records what it trained with in ``config.toml``. A resume continues that run, so a resume
whose warm start (``init``), data, model, curriculum, reward or algorithm differ would give results that
belong to neither configuration (a "warm start" comparison against a model the run never started from).
Such a resume is refused before any work, with one ``error:`` line naming each changed key.

What may change on resume (:data:`RESUMABLE`), applied from the resumed step and then recorded:

    lr, any group_lr, grad_clip     the optimiser takes the configured rates and clip at the resumed step
                                    (``restore_optimizer``): the NaN guard's advice, lower the learning rate
    progress, tensorboard,          how the run reports, saves and uses the CPU, not what it trains
    keep_last, checkpoint_every,
    torch_threads

A finished run (MRL's ``final/`` written) has no step left to apply anything to: every change is refused.
So the recorded ``config.toml`` only ever says what trained: a run that resumed with a lower learning rate
records the rate it ended with, and nothing else moves. To change anything else, start a new run directory,
or (``rxmrl run``) redo the phase: ``--redo PHASE`` (:mod:`rxmrl.pipeline.phases`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rxmrl.config import ConfigError, changed_values

RESUMABLE = frozenset({"lr", "group_lr", "grad_clip", "progress", "tensorboard", "keep_last", "checkpoint_every",
                       "torch_threads"})
CHECKPOINTS = "checkpoints"


def resumable(key: str) -> bool:
    """Whether a resume may change setting ``key`` (a dotted key path): one of :data:`RESUMABLE` names it."""
    return any(part in RESUMABLE for part in key.split("."))


def has_checkpoints(run_dir: str | Path) -> bool:
    """Whether a trainer's run directory holds a checkpoint to resume from (then a re-run is a resume)."""
    folder = Path(run_dir) / CHECKPOINTS
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


def unresumable_changes(saved: str | Path, config: Any, finished: bool = False) -> dict[str, tuple[Any, Any]]:
    """The settings of ``config`` that differ from the recorded ``saved`` and may not change on resume (a
    path given another way, ``./a`` for ``a``, is the same path). A ``finished`` run trains no further step,
    so no change would apply: every one counts."""
    changed = changed_values(saved, config)
    return {key: values for key, values in changed.items()
            if not (resumable(key) and not finished) and not _same_path(*values)}


def refuse_unresumable_changes(saved: str | Path, config: Any, finished: bool = False,
                               remedy: str = "use a new run_dir") -> None:
    """Raise ``ConfigError`` naming every setting a resume from ``saved``'s run may not change (any, when
    the run is ``finished``), before the run writes anything."""
    changed = unresumable_changes(saved, config, finished)
    if not changed:
        return
    allowed = "nothing: it finished" if finished else f"only {', '.join(sorted(RESUMABLE))}"
    raise ConfigError(f"{describe(changed)} changed since {saved} was recorded, and this run resumes from its "
                      f"checkpoints: a resume may change {allowed}; set it back, or {remedy}")


def describe(changed: dict[str, tuple[Any, Any]], limit: int = 4) -> str:
    """``key (old -> new), ...`` for the first ``limit`` changes, then how many more."""
    shown = [f"{key} ({before!r} -> {after!r})" for key, (before, after) in list(changed.items())[:limit]]
    more = len(changed) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def check_init_apart(init: str | Path, run_dir: str | Path) -> None:
    """Refuse a warm start that is the run directory, inside it or around it: the run would write its
    ``config.toml``, checkpoints and ``final/`` over the model it starts (and later resumes) from."""
    if not init:
        return
    start, run = Path(init).resolve(), Path(run_dir).resolve()
    if start == run or run in start.parents or start in run.parents:
        raise ConfigError(f"--init {init} and --run-dir {run_dir} overlap: the run would write over its own warm "
                          "start; give a run directory outside the warm-start folder")


def _same_path(before: Any, after: Any) -> bool:
    if not (isinstance(before, str) and isinstance(after, str) and before and after):
        return False
    return Path(before).resolve() == Path(after).resolve()
