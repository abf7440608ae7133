"""Fact recall: the fraction of a follow-up's facts that the answer states, as whole words or phrases.

Reported beside the reward, so an agent that games BLEU/cosine without recalling the facts shows up in the
logs. An MRL run may also pay for it (:func:`mix_fact_recall`, ``[reward] fact_weight``): the default
reward barely moves with recall, because fact words are a few tokens of an answer. Validation still
reports the plain reward and recall apart. Matching is case-insensitive; a fact matches only on word boundaries
(``"cat"`` is not found in ``"concatenate"``) and any run of whitespace in a phrase matches any other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch


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


def held_fact_recall(answer: str, facts: Sequence, written: Sequence[str]) -> float:
    """Recall of the facts that memory holds: those whose source interaction, as written into memory, states them.

    ``facts`` are ``rxmrl.data.schema.Fact`` (``text``, ``source``); ``written[k]`` is interaction ``k`` as the
    agent wrote it (0: the saved interaction). When the agent writes its own answers, a follow-up may ask about a
    scene that only the *reference* answer told: no memory can recall it, and counting it measures how well the
    policy guesses. With ``F_held = {f : f.text in written[f.source]}``::

        held_fact_recall = |{f in F_held : f.text in answer}| / |F_held|      (NaN when F_held is empty)

    Under teacher forcing every fact is held and this equals :func:`fact_recall`.
    """
    held = [f.text for f in facts if f.text.strip() and f.source < len(written)
            and _fact_pattern(f.text).search(written[f.source])]
    if not held:
        return math.nan
    return fact_recall(answer, held)


def mix_fact_recall(reward: torch.Tensor, recall: torch.Tensor, weight: float, scale: float) -> torch.Tensor:
    """``(1 − weight)·reward + weight·scale·recall`` where ``recall`` is known, ``reward`` where it is NaN.

    ``reward`` and ``recall`` are ``[B]``; the mix stays in ``[0, scale]`` when both inputs are in range.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fact weight {weight}: expected a share in [0, 1]")
    if weight == 0.0:
        return reward
    recall = recall.to(reward)
    mixed = (1.0 - weight) * reward + weight * scale * recall
    return torch.where(torch.isnan(recall), reward, mixed)
