"""The answer strategies a reward audit plays: what a reward that measures memory must rank correctly.

Each case is an :class:`~rxmrl.envs.Agent` (batched form) over the env's episodes; the scripted ones read the
episode (privileged, like the oracle) and build their answer from the conversation as the data has it:

    case           answer to follow-up j of episode n
    oracle         the reference answer
    wrong_fact     the reference with every remembered fact (annotated) and memory token swapped for one of
                   another episode: the same fluent answer, with what memory should supply wrong
    other_episode  another episode's answer to its follow-up j: fluent, in the right place of a conversation,
                   knowing nothing of this one (the partner episode is π(n), a fixed derangement)
    constant       π(n)'s answer to its first follow-up, at every step: ``other_episode`` at step 0, then the
                   same text again, so any gain over ``other_episode`` is credit for agreeing with itself
    previous       the answer of the interaction before (j = 0: the saved one), copied
    history_dump   every content word of the earlier interactions: the way to game a recall term
    empty          nothing ([A] [EOS])
    model          a checkpoint with its memory; ``model_reset``: the same model answering from a fresh STM,
                   nothing ever written (the memory-off ablation)

:class:`RecordedAnswers` keeps the answers a case gave, so every further preset rescores the same answers
without playing the case (or running the model) again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from rxmrl.data import Episode
from rxmrl.envs.agents import Agent
from rxmrl.envs.padded import PaddedIds
from rxmrl.rewards import MemoryTarget, content_word_sequence

SCRIPTED_CASES: tuple[str, ...] = ("oracle", "wrong_fact", "other_episode", "constant", "previous",
                                   "history_dump", "empty")
MODEL_CASES: tuple[str, ...] = ("model", "model_reset")


class _ScriptedAgent(Agent):
    """Answers from the episodes of the batch: ``text(episode, row, step)`` per row."""

    def begin_batch(self, start) -> None:
        self._episodes, self._step = list(start.episodes), 0

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        texts = [self.text(e, b, self._step) for b, e in enumerate(self._episodes)]
        self._step += 1
        return self._encode_answers(texts, queries.ids.device)

    def text(self, episode: Episode, row: int, step: int) -> str:
        raise NotImplementedError


class EmptyAgent(_ScriptedAgent):
    name = "empty"

    def text(self, episode: Episode, row: int, step: int) -> str:
        return ""


class PreviousAnswerAgent(_ScriptedAgent):
    """Copies the answer of the interaction before the current follow-up (the data's)."""

    name = "previous"

    def text(self, episode: Episode, row: int, step: int) -> str:
        return episode.all_interactions()[step].answer


class HistoryDumpAgent(_ScriptedAgent):
    """Every content word of the interactions so far, once each, in order of first use."""

    name = "history_dump"

    def text(self, episode: Episode, row: int, step: int) -> str:
        history = " ".join(f"{i.query} {i.answer}" for i in episode.all_interactions()[: step + 1])
        return " ".join(dict.fromkeys(content_word_sequence(history)))


class OtherEpisodeAgent(_ScriptedAgent):
    """Episode ``n``'s follow-up ``j`` gets partner ``π(n)``'s answer to its follow-up ``j``
    (``constant=True``: to its first follow-up, at every step). ``π(n) = (n + shift) mod N`` over the
    ``episodes`` pool, with a seeded ``shift`` in ``1..N-1``, so no episode is its own partner."""

    def __init__(self, episodes: Sequence[Episode], seed: int = 0, constant: bool = False, tokenizer=None) -> None:
        super().__init__(tokenizer)
        if len(episodes) < 2:
            raise ValueError(f"answers of other episodes need at least 2 episodes, got {len(episodes)}")
        self.pool, self.constant = list(episodes), constant
        self.name = "constant" if constant else "other_episode"
        self._position = {id(e): i for i, e in enumerate(self.pool)}
        self._shift = 1 + int(np.random.default_rng(seed).integers(len(self.pool) - 1))

    def text(self, episode: Episode, row: int, step: int) -> str:
        if id(episode) not in self._position:
            raise ValueError("the episode is not in this agent's pool (give it the env's episodes)")
        partner = self.pool[(self._position[id(episode)] + self._shift) % len(self.pool)]
        follow_ups = partner.interactions
        return follow_ups[0 if self.constant else min(step, len(follow_ups) - 1)].answer


class WrongFactAgent(_ScriptedAgent):
    """The reference answer with what memory should supply wrong (see the module table).

    Annotated facts are swapped first (a fact phrase of another episode), then every memory token left (a
    memory token of another episode). Replacements never occur in the episode's own conversation, so the
    answer cannot be right by accident; capitalisation is kept.
    """

    name = "wrong_fact"

    def __init__(self, episodes: Sequence[Episode], targets: Callable[[Episode], list[MemoryTarget]],
                 seed: int = 0, tokenizer=None) -> None:
        super().__init__(tokenizer)
        self.targets = targets
        self.rng = np.random.default_rng(seed)
        # per step index: another episode's fact or memory token at the same place of its conversation is
        # most often the same kind of thing (a colour for a colour)
        self.fact_pools: dict[int, list[str]] = {}
        self.word_pools: dict[int, list[str]] = {}
        for episode in episodes:
            for j, step_facts in enumerate(episode.facts or []):
                self.fact_pools.setdefault(j, []).extend(f.text for f in step_facts)
            for j, target in enumerate(targets(episode)):
                self.word_pools.setdefault(j, []).extend(target.targets)
        self.fact_pools = {j: sorted(set(p)) for j, p in self.fact_pools.items()}
        self.word_pools = {j: sorted(set(p)) for j, p in self.word_pools.items()}

    def begin_batch(self, start) -> None:
        super().begin_batch(start)
        self._targets = [self.targets(e) for e in self._episodes]

    def text(self, episode: Episode, row: int, step: int) -> str:
        answer = episode.interactions[step].answer
        conversation = " ".join(f"{i.query} {i.answer}" for i in episode.all_interactions()).lower()
        facts = [f.text for f in episode.facts[step]] if episode.facts is not None else []
        for fact in sorted(facts, key=len, reverse=True):
            answer = _swap(answer, fact, self._draw(self.fact_pools, step, conversation))
        for word in sorted(self._targets[row][step].targets):
            answer = _swap(answer, word, self._draw(self.word_pools, step, conversation), possessive=True)
        return answer

    def _draw(self, pools: dict[int, list[str]], step: int, conversation: str) -> str:
        """A fact or word of the same step of another episode (of any step if none is left) that this
        conversation never says."""
        def fresh(pool: list[str]) -> list[str]:
            return [p for p in pool if not re.search(rf"(?<!\w){re.escape(p.lower())}(?!\w)", conversation)]

        choices = fresh(pools.get(step, [])) or fresh(sorted({p for pool in pools.values() for p in pool}))
        if not choices:
            raise ValueError("no fact or memory token of another episode is absent from this conversation; "
                             "give the audit more episodes")
        return choices[int(self.rng.integers(len(choices)))]


def _swap(text: str, old: str, new: str, possessive: bool = False) -> str:
    """Whole-word, case-insensitive replacement of ``old`` (and ``old's`` with ``possessive``) keeping a
    leading capital."""
    suffix = r"(?:'s)?" if possessive else ""
    pattern = re.compile(rf"(?<!\w){re.escape(old)}{suffix}(?!\w)", re.IGNORECASE)

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        ending = found[len(old):]  # "'s" when a possessive matched
        return (new[:1].upper() + new[1:] if found[:1].isupper() else new) + ending

    return pattern.sub(replace, text)


class RecordedAnswers(Agent):
    """Wraps an agent, keeping the answers it gives; :meth:`replay` plays them back batch by batch, step by
    step, in the same order (the audit plays every case on the same episodes, in the same batches)."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(agent.tokenizer)
        self.agent, self.name = agent, agent.name
        self.batches: list[list[PaddedIds]] = []

    def begin_batch(self, start) -> None:
        self.agent.begin_batch(start)
        self.batches.append([])

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        answers = self.agent.answer_batch(queries)
        self.batches[-1].append(answers)
        return answers

    def remember_batch(self, queries: PaddedIds, answers: PaddedIds) -> None:
        self.agent.remember_batch(queries, answers)

    def replay(self) -> Agent:
        return _Replay(self.batches, self.name, self.tokenizer)


class _Replay(Agent):
    def __init__(self, batches: list[list[PaddedIds]], name: str, tokenizer) -> None:
        super().__init__(tokenizer)
        self.batches, self.name, self._batch = batches, name, -1

    def begin_batch(self, start) -> None:
        self._batch, self._step = self._batch + 1, 0
        if self._batch >= len(self.batches) or len(start.episodes) != len(self.batches[self._batch][0]):
            raise RuntimeError(f"the recorded answers of {self.name!r} do not fit this batch of episodes")

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        answers = self.batches[self._batch][self._step]
        self._step += 1
        return answers
