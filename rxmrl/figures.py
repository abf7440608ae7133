"""How every figure is drawn and written: matplotlib on the Agg backend (files only, no display needed),
each PNG written atomically. The report, the reward audit, the latency table and the seed study all draw
through here, so none of them imports another's plots.
"""

from __future__ import annotations

from pathlib import Path

from rxmrl.runtime import atomic_file


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path) -> Path:
    """Lay the figure out, write it as a PNG atomically and close it."""
    path = Path(path)
    figure.tight_layout()
    with atomic_file(path) as temporary:
        figure.savefig(temporary, dpi=110, format=path.suffix.lstrip(".") or "png")
    pyplot().close(figure)
    return path
