"""Fact tokens: the answer tokens that repeat a fact of an earlier interaction.

The curriculum's optional ``facts`` column names, per follow-up, the phrases its reference answer takes from
earlier interactions ("brown" in "Lily's drum was brown."). Only those tokens need memory; the rest of an
answer restates the question or tells something new. The memory probe scores them apart, and stage 4 can
weight them up (``MemoryAwareStageConfig.fact_weight``): on the nano preset they are ~7% of the answer
tokens, so with a plain mean their gradient is small next to the language-modelling one, and whether the
decoder learns to read them from memory within the warm start's budget depended on the seed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rxmrl.data.schema import Episode
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.stages.batching import Row


def fact_token_masks(tokenizer: RxTokenizer, episode: Episode, max_length: int) -> list[list[int]]:
    """Per interaction row (as :func:`episode_rows` lays it out), 1 on tokens of a fact phrase in the answer.

    Row layout ``[BOS][Q] q [A] a [EOS]``: answer token ``k`` sits at ``len(q) + 3 + k``. A token counts when
    its characters overlap a whole-word, case-insensitive match of one of the follow-up's facts.
    """
    masks = []
    for index, turn in enumerate(episode.all_interactions()):
        answer_start = len(tokenizer.encode(turn.query)) + 3
        encoding = tokenizer.tokenizer.encode(turn.answer, add_special_tokens=False)
        mask = [0] * min(answer_start + len(encoding.ids) + 1, max_length)
        facts = episode.facts[index - 1] if episode.facts and index > 0 else []
        spans = [m.span() for fact in facts
                 for m in re.finditer(rf"\b{re.escape(fact.text)}\b", turn.answer, flags=re.IGNORECASE)]
        for k, (begin, end) in enumerate(encoding.offsets):
            if answer_start + k < len(mask) and any(begin < s_end and end > s_begin for s_begin, s_end in spans):
                mask[answer_start + k] = 1
        masks.append(mask)
    return masks


def weight_fact_tokens(tokenizer: RxTokenizer, episodes: Sequence[Episode], rows: list[list[Row]],
                       weight: float, max_length: int) -> list[list[Row]]:
    """``rows`` (from :func:`episode_rows`) with the targets on fact tokens multiplied by ``weight``.

    Raises when no episode has ``facts``: a weight that silently does nothing would be misread as a result.
    """
    if not any(episode.facts for episode in episodes):
        raise ValueError(f"fact_weight={weight} needs episodes with a 'facts' column (the embedded curriculum "
                         "has one); these episodes have none -- set fact_weight = 1")
    weighted = []
    for episode, episode_rows_ in zip(episodes, rows, strict=True):
        masks = fact_token_masks(tokenizer, episode, max_length)
        weighted.append([(ids, [t * (weight if fact else 1) for t, fact in zip(targets, mask, strict=True)])
                         for (ids, targets), mask in zip(episode_rows_, masks, strict=True)])
    return weighted


__all__ = ["fact_token_masks", "weight_fact_tokens"]
