"""Parameter counts of a whole configuration, and the table of ours against the published figures.

Apart from :mod:`rxmrl.model.params` because it builds the model: the counts themselves only read a built
one, so the model card (which :class:`~rxmrl.model.ReactiveTransformer` writes) can use them without an
import circle.
"""

from __future__ import annotations

import torch

from rxmrl.model.config import PRESETS, RxTConfig
from rxmrl.model.params import PUBLISHED, count_parameters
from rxmrl.model.rxt import ReactiveTransformer


def count_preset(config: RxTConfig) -> dict[str, int]:
    """Counts for a config, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = ReactiveTransformer(config)
    return count_parameters(model)


def parameter_table(name: str, config: RxTConfig | None = None) -> str:
    """A printable table of ours vs published (with the relative difference) for a preset."""
    counts = count_preset(config or PRESETS[name])
    published = PUBLISHED.get(name, {})
    lines = [f"{'component':<18}{'ours':>14}{'published':>14}{'diff':>9}"]
    for key, value in counts.items():
        ref = published.get(key)
        ref_text = f"{ref / 1e6:>13.2f}M" if ref else f"{'-':>14}"
        diff = f"{(value - ref) / ref:>+8.1%}" if ref else f"{'':>9}"
        lines.append(f"{key:<18}{value / 1e6:>13.2f}M{ref_text}{diff}")
    return "\n".join(lines)
