"""Observation and action spaces: natural text, and token-id sequences.

Gymnasium's default :class:`~gymnasium.spaces.Text` charset is ASCII letters and digits and its minimum
length is 1, so a story with a comma, an accent or an empty answer would be "outside the space".
:class:`NaturalText` is a ``Text`` space over every printable Unicode character plus ``\\n``, ``\\t`` and
``\\r``, with empty strings allowed; it stays a ``Text`` so vector envs batch it as usual.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
from gymnasium import spaces


@functools.lru_cache(maxsize=1)
def natural_text_charset() -> frozenset[str]:
    """Every printable code point (letters, digits, punctuation, symbols, spaces of all scripts) + newlines/tabs."""
    printable = (c for c in map(chr, range(sys.maxunicode + 1)) if c.isprintable())
    return frozenset(printable) | frozenset("\n\t\r")


class NaturalText(spaces.Text):
    """Strings of 0..``max_length`` characters of natural text in any script."""

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None) -> None:
        super().__init__(max_length, min_length=min_length, charset=natural_text_charset(), seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        return x.isprintable() or all(c in self.character_set for c in x)

    def __repr__(self) -> str:
        return f"NaturalText({self.min_length}, {self.max_length})"


def token_ids_space(vocab_size: int, seed: int | np.random.Generator | None = None) -> spaces.Sequence:
    """Variable-length 1-D ``int64`` arrays of token ids in ``[0, vocab_size)``."""
    return spaces.Sequence(spaces.Discrete(vocab_size), stack=True, seed=seed)
