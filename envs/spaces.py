"""Observation and action spaces: natural text, and token-id sequences.

Gymnasium's default :class:`~gymnasium.spaces.Text` charset is ASCII letters and digits and its minimum
length is 1, so a story with a comma, an accent or an empty answer would be "outside the space".
:class:`NaturalText` is a ``Text`` space over every printable Unicode character plus ``\\n``, ``\\t`` and
``\\r``, with empty strings allowed; it stays a ``Text`` so vector envs batch it as usual.
"""

from __future__ import annotations

import copy as copy_module
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


@functools.lru_cache(maxsize=1)
def _charset_tables() -> tuple[frozenset[str], tuple[str, ...], dict[str, np.int32], str]:
    """The lookup tables ``Text`` builds per instance, built once per process and shared (~150k characters)."""
    characters = tuple(sorted(natural_text_charset()))
    index = {c: np.int32(i) for i, c in enumerate(characters)}
    return frozenset(characters), characters, index, "".join(characters)


class NaturalText(spaces.Text):
    """Strings of 0..``max_length`` characters of natural text in any script.

    The charset tables are shared by every instance: vector envs deep-copy and batch spaces, and copying
    a 150k-character table per copy would take seconds.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | np.random.Generator | None = None) -> None:
        if not 0 <= min_length <= max_length:
            raise ValueError(f"expected 0 <= min_length <= max_length, got {min_length} and {max_length}")
        self.min_length, self.max_length = int(min_length), int(max_length)
        self._char_set, self._char_list, self._char_index, self._char_str = _charset_tables()
        spaces.Space.__init__(self, dtype=str, seed=seed)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        return x.isprintable() or all(c in self.character_set for c in x)

    def __deepcopy__(self, memo: dict) -> NaturalText:
        copy = NaturalText(self.max_length, min_length=self.min_length)
        copy._np_random = copy_module.deepcopy(self._np_random, memo)
        return copy

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, NaturalText) and self.min_length == other.min_length
                and self.max_length == other.max_length)

    def __hash__(self) -> int:
        return hash((NaturalText, self.min_length, self.max_length))

    def __repr__(self) -> str:
        return f"NaturalText({self.min_length}, {self.max_length})"


def token_ids_space(vocab_size: int, seed: int | np.random.Generator | None = None) -> spaces.Sequence:
    """Variable-length 1-D ``int64`` arrays of token ids in ``[0, vocab_size)``."""
    return spaces.Sequence(spaces.Discrete(vocab_size), stack=True, seed=seed)
