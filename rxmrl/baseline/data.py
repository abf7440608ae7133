"""Conversation-history prompts: what a stateless LLM must read to answer each turn of an MRL episode.

A stateless model has no memory between calls, so turn ``j`` (follow-up ``j``) is answered from the whole
history, the saved first interaction included::

    prompt     = [BOS] [Q] q0 [A] a0 [EOS] [Q] q1 [A] a1 [EOS] ... [Q] qj [A]
    completion = aj [EOS]

Each earlier interaction is ``[Q] q [A] a [EOS]`` (the RxT interaction format without a per-turn
``[BOS]``), so the last turn reads exactly like the RxT decoder's prompt ``[Q] q [A]``. The prompt grows
linearly with the turn -- the O(N^2) conversation cost RxT avoids.

When a prompt does not fit the context (``max_length`` tokens with the completion), whole interactions are
dropped from the left, oldest first (``[BOS]`` stays); if the current query alone still does not fit, its
oldest tokens are cut. Every truncation is counted in :class:`TruncationStats`, because a dropped saved
interaction is information the stateless model can no longer use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rxmrl.data.schema import Episode, Interaction
from rxmrl.special_tokens import ANSWER_ID, BOS_ID

if TYPE_CHECKING:
    import datasets

    from rxmrl.tokenizer import RxTokenizer


def history_turn(ids: Sequence[int]) -> list[int]:
    """An RxT-format sequence (``[BOS][Q] q ...``, :mod:`rxmrl.tokenizer`) as a turn of the history: the same
    ids without the per-turn ``[BOS]``."""
    ids = list(ids)
    return ids[1:] if ids[:1] == [BOS_ID] else ids


def turn_ids(tokenizer: RxTokenizer, interaction: Interaction) -> list[int]:
    """``[Q] q [A] a [EOS]``: one finished interaction as it appears in the history."""
    return history_turn(tokenizer.encode_query(interaction.query) + tokenizer.encode_answer(interaction.answer))


def query_ids(tokenizer: RxTokenizer, query: str) -> list[int]:
    """``[Q] q [A]``: the open turn the model answers."""
    return history_turn(tokenizer.encode_prompt(query))


def completion_ids(tokenizer: RxTokenizer, answer: str) -> list[int]:
    """``a [EOS]``: the training target of a turn (the answer without its ``[A]``, which the prompt ends with)."""
    return tokenizer.encode_answer(answer)[1:]


def answer_row(completion: Sequence[int]) -> list[int]:
    """A generated completion (``a [EOS]``, or ``a`` cut at the token limit) as the environment's answer row
    ``[A] a [EOS]``: the inverse of :func:`completion_ids`."""
    return [ANSWER_ID, *completion]


@dataclass(frozen=True)
class HistoryPrompt:
    """A prompt ending in ``[A]``; ``dropped_turns``/``dropped_tokens`` say what left truncation removed."""

    ids: list[int]
    dropped_turns: int = 0
    dropped_tokens: int = 0

    @property
    def truncated(self) -> bool:
        return self.dropped_tokens > 0


def fit_history(history: Sequence[Sequence[int]], open_turn: Sequence[int], budget: int | None) -> HistoryPrompt:
    """``[BOS] + history + open_turn`` in at most ``budget`` tokens, dropping the oldest turns first."""
    if budget is not None and budget < 2:
        raise ValueError(f"prompt budget {budget}: expected at least 2 tokens ([BOS] and [A])")
    turns, open_turn = list(history), list(open_turn)
    length = 1 + sum(len(t) for t in turns) + len(open_turn)
    dropped_turns = dropped_tokens = 0
    while budget is not None and length > budget and turns:
        removed = turns.pop(0)
        length -= len(removed)
        dropped_turns += 1
        dropped_tokens += len(removed)
    if budget is not None and length > budget:  # the open query alone is too long: keep its newest tokens
        cut = length - budget
        open_turn = open_turn[cut:]
        dropped_tokens += cut
    ids = [BOS_ID, *(token for turn in turns for token in turn), *open_turn]
    return HistoryPrompt(ids, dropped_turns, dropped_tokens)


def history_prompt(tokenizer: RxTokenizer, history: Sequence[Interaction], query: str,
                   max_prompt_tokens: int | None = None) -> HistoryPrompt:
    """The prompt for answering ``query`` after the finished ``history`` (oldest first)."""
    return fit_history([turn_ids(tokenizer, i) for i in history], query_ids(tokenizer, query), max_prompt_tokens)


@dataclass
class TruncationStats:
    """How many examples lost history to the context limit (and how much)."""

    examples: int = 0
    truncated_examples: int = 0
    dropped_turns: int = 0
    dropped_tokens: int = 0
    longest_prompt: int = 0
    prompt_lengths: list[int] = field(default_factory=list, repr=False)

    def add(self, prompt: HistoryPrompt, untruncated_length: int) -> None:
        self.examples += 1
        self.truncated_examples += prompt.truncated
        self.dropped_turns += prompt.dropped_turns
        self.dropped_tokens += prompt.dropped_tokens
        self.longest_prompt = max(self.longest_prompt, untruncated_length)
        self.prompt_lengths.append(len(prompt.ids))

    def summary(self) -> str:
        share = self.truncated_examples / max(self.examples, 1)
        return (f"{self.examples} examples, {self.truncated_examples} truncated ({share:.1%}), "
                f"{self.dropped_turns} turns / {self.dropped_tokens} tokens dropped, "
                f"longest untruncated prompt {self.longest_prompt} tokens")


@dataclass(frozen=True)
class HistoryExample:
    """One training example: ``input_ids = prompt + completion``, loss on the completion only."""

    prompt_ids: list[int]
    completion_ids: list[int]
    turn: int  # follow-up index (-1: the first interaction, answered from an empty history)

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.completion_ids

    @property
    def completion_mask(self) -> list[int]:
        return [0] * len(self.prompt_ids) + [1] * len(self.completion_ids)


def episode_examples(tokenizer: RxTokenizer, episode: Episode, max_length: int, steps: int | None = None,
                     include_first: bool = True, stats: TruncationStats | None = None) -> list[HistoryExample]:
    """One example per follow-up (and one for the first interaction when ``include_first``).

    Follow-up ``j``'s prompt holds interactions ``0..j-1`` with the *reference* answers (teacher forcing),
    cut from the left so prompt + completion fit ``max_length``.
    """
    interactions = episode.all_interactions()[: None if steps is None else steps + 1]
    turns = [turn_ids(tokenizer, i) for i in interactions]
    examples = []
    for index, interaction in enumerate(interactions):
        if index == 0 and not include_first:
            continue
        completion = completion_ids(tokenizer, interaction.answer)[: max_length - 2]  # room for [BOS] ... [A]
        open_turn = query_ids(tokenizer, interaction.query)
        prompt = fit_history(turns[:index], open_turn, max_length - len(completion))
        if stats is not None:
            stats.add(prompt, 1 + sum(map(len, turns[:index])) + len(open_turn))
        examples.append(HistoryExample(prompt.ids, completion, index - 1))
    return examples


def history_dataset(tokenizer: RxTokenizer, episodes: Iterable[Episode], max_length: int,
                    steps: int | None = None, include_first: bool = True,
                    ) -> tuple[datasets.Dataset, TruncationStats]:
    """A pre-tokenised ``datasets.Dataset`` (``input_ids``, ``completion_mask``, ``turn``) for TRL's SFT.

    TRL's ``SFTTrainer`` takes already tokenised rows as they are and turns ``completion_mask`` into
    ``-100`` labels on the prompt (``completion_only_loss=True``); tokenising ourselves keeps the exact
    ids of our interaction format and our left truncation (TRL truncates from the right only).
    """
    import datasets

    stats = TruncationStats()
    rows: dict[str, list] = {"input_ids": [], "completion_mask": [], "turn": []}
    for episode in episodes:
        for example in episode_examples(tokenizer, episode, max_length, steps, include_first, stats):
            rows["input_ids"].append(example.input_ids)
            rows["completion_mask"].append(example.completion_mask)
            rows["turn"].append(example.turn)
    if not rows["input_ids"]:
        raise ValueError("no episodes given: the history dataset would be empty")
    return datasets.Dataset.from_dict(rows), stats
