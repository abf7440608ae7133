"""Length term: reward answers near the reference length, penalise overlong ones harder.

With generated length ``g`` and reference length ``r`` (tokens, after the preset's stripping)::

    len(g, r) = clip(1 - (r - g) / r, 0, 1)                    if g <= r   (too short: linear)
              = clip(1 - overlong_penalty * (g - r) / r, 0, 1)  if g > r    (too long: steeper)

An overlong answer is penalised harder because padding an answer with extra (possibly copied) text is the
cheap way to raise recall-like terms; too-short answers already lose BLEU through the brevity penalty.
An empty reference counts as length 1.
"""

from __future__ import annotations

import torch


def length_score(
    generated_lengths: torch.Tensor, reference_lengths: torch.Tensor, overlong_penalty: float = 2.0
) -> torch.Tensor:
    """``[B]`` scores in [0, 1] (1 when the lengths are equal)."""
    g = generated_lengths.double()
    r = reference_lengths.double().clamp_min(1)
    deviation = torch.where(g <= r, (r - g) / r, overlong_penalty * (g - r) / r)
    return (1 - deviation).clamp(0, 1)
