"""Curriculum rows and their validation.

One row of the TinyStories-MRL curriculum is an *episode*: a first interaction (``query``, ``answer``),
which the model must save in memory, followed by follow-up ``interactions`` that ask about it. The
published parquet stores ``interactions`` as ``list<struct<answer, query>>``; our generator adds two
optional columns, ``facts`` (what each follow-up's reference answer depends on, and where it was said) and
``strategy`` ("cumulative" | "long_range").

Interaction indices used by :class:`Fact.source`: 0 is the first (saved) interaction, ``k >= 1`` is
follow-up ``k - 1``. So follow-up ``j`` may depend on interactions ``0..j``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rxmrl.runtime import InputError

STRATEGIES: tuple[str, ...] = ("cumulative", "long_range")

PUBLISHED_CONFIGS: tuple[str, ...] = (
    "steps-2", "steps-4", "steps-6", "steps-8", "steps-8-lr", "steps-12", "steps-16",
)
"""Configs of ``ReactiveAI/TinyStories-MRL`` (``steps-16`` may be absent there)."""

LONG_HORIZON_CONFIGS: tuple[str, ...] = (
    "steps-10", "steps-10-lr", "steps-12-lr", "steps-14", "steps-14-lr", "steps-16-lr",
)
"""The horizons up to 16 steps that the published set lacks, in both strategies: the card's aim is a 16-step
MRL curriculum, and its stages (mixed strategies too) and evaluations read these from a generated folder."""

EMBEDDED_CONFIGS: tuple[str, ...] = PUBLISHED_CONFIGS + LONG_HORIZON_CONFIGS + ("steps-24", "steps-32")
"""Configs the embedded generator writes by default; it also accepts any ``steps-N`` / ``steps-N-lr``."""

SPLITS: tuple[str, ...] = ("train", "validation", "supervised")

_CONFIG_PATTERN = re.compile(r"^steps-([1-9][0-9]*)(-lr)?$")
MAX_STEPS = 64


class CurriculumValidationError(ValueError, InputError):
    """A curriculum row, config or split does not match the schema; the message says where and why (an
    :class:`~rxmrl.runtime.InputError`: the CLI prints one ``error:`` line)."""


@dataclass(frozen=True)
class Interaction:
    query: str
    answer: str


@dataclass(frozen=True)
class Fact:
    """A short word/phrase a follow-up's reference answer repeats from interaction ``source``."""

    text: str
    source: int


@dataclass(frozen=True)
class Episode:
    """First interaction to save, then the follow-ups; ``facts[j]`` belong to follow-up ``j``."""

    query: str
    answer: str
    interactions: list[Interaction]
    facts: list[list[Fact]] | None = None
    strategy: str | None = None

    @property
    def num_follow_ups(self) -> int:
        return len(self.interactions)

    def all_interactions(self) -> list[Interaction]:
        """Index ``k`` here is interaction ``k`` in :class:`Fact` terms (0 = the saved one)."""
        return [Interaction(self.query, self.answer), *self.interactions]

    def to_row(self) -> dict[str, Any]:
        """The published row layout (``answer`` before ``query`` inside ``interactions``) plus extras."""
        row: dict[str, Any] = {
            "query": self.query,
            "answer": self.answer,
            "interactions": [{"answer": i.answer, "query": i.query} for i in self.interactions],
        }
        if self.facts is not None:
            row["facts"] = [[{"text": f.text, "source": f.source} for f in step] for step in self.facts]
        if self.strategy is not None:
            row["strategy"] = self.strategy
        return row


def parse_config(config: str) -> tuple[int, bool]:
    """``"steps-8-lr"`` -> ``(8, True)``; raises for anything else than ``steps-N`` / ``steps-N-lr``."""
    match = _CONFIG_PATTERN.match(config) if isinstance(config, str) else None
    if match is None or int(match.group(1)) > MAX_STEPS:
        raise CurriculumValidationError(
            f"unknown config {config!r}: expected 'steps-N' or 'steps-N-lr' with 1 <= N <= {MAX_STEPS} "
            f"(published: {', '.join(PUBLISHED_CONFIGS)})"
        )
    return int(match.group(1)), match.group(2) is not None


def config_name(steps: int, long_range: bool = False) -> str:
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise CurriculumValidationError(f"steps={steps!r}: expected an int in 1..{MAX_STEPS}")
    return f"steps-{steps}" + ("-lr" if long_range else "")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise CurriculumValidationError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return split


def has_phrase(text: str, phrase: str) -> bool:
    """Whole-word, case-insensitive containment (the rule fact recall scores with)."""
    if phrase.lower() not in text.lower():  # fast path: most checks fail here
        return False
    return re.search(rf"(?<!\w){re.escape(phrase.lower())}(?!\w)", text.lower()) is not None


class _RowChecker:
    """Validates one raw row; ``where`` reads e.g. ``"episode 17 of steps-4/train"``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, problem: str) -> CurriculumValidationError:
        return CurriculumValidationError(f"{self.where} {problem}")

    def text(self, container: Any, field: str, label: str) -> str:
        if not isinstance(container, Mapping) or field not in container:
            raise self.fail(f"is missing field '{label}' (expected a non-empty string)")
        value = container[field]
        if not isinstance(value, str):
            raise self.fail(f"field '{label}' is {type(value).__name__} {value!r:.40}, expected a string")
        if not value.strip():
            raise self.fail(f"field '{label}' is empty, expected non-empty text")
        return value

    def interactions(self, row: Mapping[str, Any], steps: int) -> list[Interaction]:
        if "interactions" not in row:
            raise self.fail("is missing field 'interactions' (expected a list of {query, answer})")
        raw = row["interactions"]
        if not isinstance(raw, (list, tuple)):
            raise self.fail(f"field 'interactions' is {type(raw).__name__}, expected a list of {{query, answer}}")
        if len(raw) < steps:
            raise self.fail(f"has {len(raw)} follow-ups, needs {steps}")
        return [
            Interaction(self.text(item, "query", f"interactions[{k}].query"),
                        self.text(item, "answer", f"interactions[{k}].answer"))
            for k, item in enumerate(raw)
        ]

    def facts(self, raw: Any, episode_texts: list[str], follow_up_answers: list[str]) -> list[list[Fact]]:
        if not isinstance(raw, (list, tuple)) or len(raw) != len(follow_up_answers):
            size = len(raw) if isinstance(raw, (list, tuple)) else type(raw).__name__
            raise self.fail(f"field 'facts' has {size} entries, expected one list per follow-up "
                            f"({len(follow_up_answers)})")
        facts: list[list[Fact]] = []
        for j, step in enumerate(raw):
            step_facts = []
            for fact in step or []:
                label = f"facts[{j}]"
                text = self.text(fact, "text", f"{label}.text")
                source = fact.get("source")
                if not isinstance(source, int) or not 0 <= source <= j:
                    raise self.fail(f"field '{label}' has source {source!r}, expected an interaction index "
                                    f"in 0..{j}")
                if not has_phrase(follow_up_answers[j], text):
                    raise self.fail(f"fact {text!r} of '{label}' is not in the answer of follow-up {j}")
                if not has_phrase(episode_texts[source], text):
                    raise self.fail(f"fact {text!r} of '{label}' is not stated in interaction {source}")
                step_facts.append(Fact(text, source))
            facts.append(step_facts)
        return facts


def validate_row(row: Mapping[str, Any], steps: int, where: str) -> Episode:
    """Turns a raw row into an :class:`Episode`, or raises naming ``where``, the field and the expectation.

    ``facts`` and ``strategy`` are optional columns; a ``None`` value counts as absent (mixed files).
    """
    check = _RowChecker(where)
    if not isinstance(row, Mapping):
        raise check.fail(f"is {type(row).__name__}, expected a mapping with query, answer, interactions")
    query = check.text(row, "query", "query")
    answer = check.text(row, "answer", "answer")
    interactions = check.interactions(row, steps)
    strategy = row.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise check.fail(f"field 'strategy' is {strategy!r}, expected one of {', '.join(STRATEGIES)} or null")
    facts = None
    if row.get("facts") is not None:
        texts = [f"{query} {answer}"] + [f"{i.query} {i.answer}" for i in interactions]
        facts = check.facts(row["facts"], texts, [i.answer for i in interactions])
    return Episode(query, answer, interactions, facts, strategy)


def validate_rows(rows: Any, config: str, split: str, source: str = "") -> list[Episode]:
    """Validates every row of one config/split; ``steps`` comes from the config name."""
    steps, _ = parse_config(config)
    origin = f" ({source})" if source else ""
    return [validate_row(row, steps, f"episode {i} of {config}/{split}{origin}") for i, row in enumerate(rows)]
