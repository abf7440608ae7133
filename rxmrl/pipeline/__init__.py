"""One command for a whole experiment: warm start -> MRL -> stateless baseline -> evaluation -> report.

    rxmrl run experiments/quickstart.toml [--set key=value ...]

    from rxmrl.pipeline import PipelineConfig, run_pipeline
    run_pipeline(load_config(PipelineConfig, "experiments/quickstart.toml"))

Names load lazily so the ``rxmrl`` command stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxmrl.lazy import lazy_getattr

_EXPORTS = {
    "PipelineConfig": "rxmrl.pipeline.config", "PHASES": "rxmrl.pipeline.phases",
    "run_pipeline": "rxmrl.pipeline.run", "write_report": "rxmrl.pipeline.report",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rxmrl.pipeline.config import PipelineConfig  # noqa: F401
    from rxmrl.pipeline.report import write_report  # noqa: F401
    from rxmrl.pipeline.phases import PHASES  # noqa: F401
    from rxmrl.pipeline.run import run_pipeline  # noqa: F401

__getattr__ = lazy_getattr(__name__, _EXPORTS)
