"""Evaluation: run an agent over a curriculum split and summarise the reward range and fact recall.

    from rxmrl.evaluation import evaluate, load_agent
    result = evaluate(agent, BatchedMrlEnv(32, steps=8, split="validation", order="sequential"))
    print(result.format_table())          # mean [95% CI] / min / max per episode and per step, fact recall

Names load lazily so the ``rxmrl`` command (which imports :mod:`rxmrl.evaluation.commands`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxmrl.lazy import lazy_getattr

_EXPORTS = {
    "evaluate": "rxmrl.evaluation.reward_range", "EvaluationResult": "rxmrl.evaluation.reward_range",
    "Stat": "rxmrl.evaluation.reward_range", "bootstrap_interval": "rxmrl.evaluation.bootstrap",
    "load_agent": "rxmrl.evaluation.agents", "AGENT_NAMES": "rxmrl.evaluation.agents",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rxmrl.evaluation.agents import AGENT_NAMES, load_agent  # noqa: F401
    from rxmrl.evaluation.bootstrap import bootstrap_interval  # noqa: F401
    from rxmrl.evaluation.reward_range import EvaluationResult, Stat, evaluate  # noqa: F401

__getattr__ = lazy_getattr(__name__, _EXPORTS)
