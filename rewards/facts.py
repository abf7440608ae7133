"""Fact recall: the fraction of a follow-up's facts that the answer states, as whole words or phrases.

Reported beside the reward, never inside it, so an agent that games BLEU/cosine without recalling the
facts shows up in the logs. Matching is case-insensitive; a fact matches only on word boundaries
(``"cat"`` is not found in ``"concatenate"``) and any run of whitespace in a phrase matches any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _fact_pattern(fact: str) -> re.Pattern[str]:
    words = fact.split()
    body = r"\s+".join(re.escape(w) for w in words)
    # (?<!\w) / (?!\w) instead of \b so facts that start or end with punctuation still match
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def fact_recall(answer: str, facts: Sequence[str]) -> float:
    """Fraction of ``facts`` found in ``answer`` (1.0 when there are no facts; blank facts are ignored).

    ``facts`` may also hold ``rxmrl.data.schema.Fact`` objects (their ``text`` is matched).
    """
    facts = [getattr(f, "text", f) for f in facts]
    facts = [f for f in facts if f.strip()]
    if not facts:
        return 1.0
    found = sum(1 for f in facts if _fact_pattern(f).search(answer))
    return found / len(facts)
