"""Memory-token recall: the words of a reference answer that only memory can supply, and how many an answer states.

Why: the reference answer to a follow-up restates one or two remembered facts ("The leaf was silver.") and
then tells the next scene, which no memory can supply. BLEU and cosine over the whole answer are dominated by
that unpredictable part. Memory tokens isolate the remembered part without any annotation, so they work on
the real TinyStories-MRL data as well as on the embedded curriculum (whose ``facts`` column validates them).

For follow-up ``j`` with query ``q``, reference answer ``r`` and the earlier interactions ``h_0 .. h_j`` of the
conversation *as the data set has them* (0 = the saved one, each ``query + answer``)::

    W(x)     = content words of x: lower-cased words, possessive 's dropped, stop words and the
               corpus's template words removed
    H        = (W(h_0) ∪ ... ∪ W(h_j)) − W(q)                 what the conversation holds beyond the query
    targets  = W(r) ∩ H                                       what the answer must bring back from memory
    recalled = targets ∩ W(a)                                 for an answer a
    claimed  = W(a) ∩ H                                       what a claims to remember

    recall    = |recalled| / |targets|
    precision = |recalled| / |claimed|          (0 when nothing is claimed)
    F_beta    = (1 + beta²) · P · R / (beta² · P + R)

Template words are the content words that occur in more than ``template_frequency`` (default 10%) of
the interactions of a corpus (:class:`WordStatistics`, by default the curriculum's train split), in more
than one of its conversations: "felt", "named", "found", "near". They recur in every story's continuation, so a memoryless answer would state them
anyway; without the cut about half of the target words are such words, and an answer with every fact wrong
keeps half its recall. Precision is what stops the cheap way to game recall: dumping every word of the
conversation recalls every target but claims the whole history. A step whose targets are empty (the answer repeats nothing from memory
that the query did not already say) has no memory score: ``NaN``, and a composite reward leaves the term out.

The sets depend only on the data, so :func:`memory_targets` computes them once per episode step; scoring an
answer is then a regex pass and two set intersections.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself yourselves
    also said says say tell told one went got get go let lets s t
    don didn doesn isn wasn weren aren hasn haven hadn won wouldn couldn shouldn ll re ve d m
    """.split()
)
"""Function words of English that say nothing a memory must keep (pronouns, articles, auxiliaries,
prepositions, conjunctions, question words, the stems of contractions) plus a few story-telling verbs;
content words stay."""

# every ASCII character but letters, digits and the apostrophe separates words (str.translate: C speed)
_SEPARATORS = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "'")})


def _words(text: str) -> list[str]:
    return text.lower().translate(_SEPARATORS).split()


def content_word_sequence(text: str) -> list[str]:
    """The content words of ``text`` in order (repeats kept): lower-cased, ``"Rose's"`` -> ``"rose"``."""
    words = (_stem(w) for w in _words(text))
    return [w for w in words if w and w not in STOP_WORDS]


def content_words(text: str) -> frozenset[str]:
    """``W(text)``: the lower-cased words of ``text`` without stop words; ``"Rose's"`` counts as ``"rose"``.

    The set of :func:`content_word_sequence`, built with set operations."""
    words = _word_set(text) - STOP_WORDS
    words.discard("")
    return frozenset(words)


def _word_set(text: str) -> set[str]:
    """Lower-cased words with possessives and contractions stemmed (stop words still in)."""
    words = set(_words(text))
    return {_stem(w) for w in words} if "'" in text else words


def _stem(word: str) -> str:
    """``rose's`` -> ``rose``; contractions to their first part (``didn't`` -> ``didn``, a stop word);
    quotes around a word dropped."""
    word = word.strip("'")
    if word.endswith("'s"):
        return word[:-2]
    return word.split("'", 1)[0] if "'" in word else word


class WordStatistics:
    """How often content words occur in a corpus of conversations: in how many interactions (``query +
    answer`` texts) and in how many conversations."""

    def __init__(self, conversations: Iterable[Iterable[str]]) -> None:
        counts: Counter[str] = Counter()
        spread: Counter[str] = Counter()
        total = 0
        for conversation in conversations:
            seen: set[str] = set()
            for text in conversation:
                words = content_words(text)
                counts.update(words)
                seen |= words
                total += 1
            spread.update(seen)
        self.counts, self.spread, self.documents = counts, spread, total

    @classmethod
    def from_episodes(cls, episodes: Iterable) -> WordStatistics:
        """Over every interaction (the saved one and the follow-ups) of :class:`rxmrl.data.Episode` rows."""
        return cls([f"{i.query} {i.answer}" for i in e.all_interactions()] for e in episodes)

    def frequency(self, word: str) -> float:
        """Share of the corpus's interactions that hold ``word`` (0 for an empty corpus)."""
        return self.counts[word] / self.documents if self.documents else 0.0

    def template_words(self, max_frequency: float) -> frozenset[str]:
        """Words held by more than ``max_frequency`` of the interactions, in more than one conversation (a
        word that one conversation alone uses is that conversation's memory, however small the corpus)."""
        limit = max_frequency * self.documents
        return frozenset(w for w, n in self.counts.items() if n > limit and self.spread[w] > 1)


@dataclass(frozen=True)
class MemoryTarget:
    """What one follow-up's answer must recall (``targets``) and what counts as claiming memory (``history``:
    the content words of the earlier interactions, minus the query's)."""

    targets: frozenset[str]
    history: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.targets


def memory_target(reference: str, query: str, history: Iterable[str],
                  template_words: frozenset[str] = frozenset()) -> MemoryTarget:
    """The :class:`MemoryTarget` of a follow-up, from its reference answer, its query and the texts of the
    interactions before it (each ``query + " " + answer``, as the data set has them)."""
    seen: set[str] = set()
    for text in history:
        seen |= content_words(text)
    remembered = frozenset(seen - content_words(query) - template_words)
    return MemoryTarget(content_words(reference) & remembered, remembered)


def episode_memory_targets(episode, steps: int | None = None,
                           template_words: frozenset[str] = frozenset()) -> list[MemoryTarget]:
    """The targets of the first ``steps`` follow-ups of an :class:`rxmrl.data.Episode` (default: all), each
    against the data's earlier interactions."""
    interactions = episode.all_interactions()
    count = episode.num_follow_ups if steps is None else steps
    history = [f"{i.query} {i.answer}" for i in interactions]
    return [memory_target(interactions[j + 1].answer, interactions[j + 1].query, history[: j + 1], template_words)
            for j in range(count)]


class MemoryScore(NamedTuple):
    recall: float
    precision: float
    f_beta: float


def memory_score(answer: str, target: MemoryTarget, beta: float = 1.0) -> MemoryScore:
    """Recall, precision and F_beta of ``answer`` against ``target`` (all ``NaN`` when the target is empty)."""
    if target.empty:
        return MemoryScore(math.nan, math.nan, math.nan)
    claimed_words = _word_set(answer) & target.history  # H holds no stop words: no need to remove them
    claimed = len(claimed_words)
    recalled = len(claimed_words & target.targets)  # targets ⊆ H
    recall = recalled / len(target.targets)
    precision = recalled / claimed if claimed else 0.0
    b2 = beta * beta
    f_beta = (1 + b2) * precision * recall / (b2 * precision + recall) if recalled else 0.0
    return MemoryScore(recall, precision, f_beta)
