"""Adapters to TRL's reward-function signature: ``f(prompts, completions, **columns) -> list[float]``.

TRL 1.16's ``GRPOTrainer`` calls each reward function as
``f(prompts=..., completions=..., completion_ids=..., <every dataset column as a list>, trainer_state=...,
log_extra=..., log_metric=...)``, logs it under ``f.__name__`` (class name for callable objects), and
expects one float (or None) per completion. Completions are strings, or -- for conversational datasets --
lists of ``{"role", "content"}`` messages, of which the last one is the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rxmrl.rewards.facts import fact_recall
from rxmrl.rewards.memory_tokens import WordStatistics, memory_target
from rxmrl.rewards.retention import MemoryRetentionReward
from rxmrl.rewards.rxlm import RxlmReward


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The answer text of a TRL completion (plain string, or the last message of a conversation)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # multimodal content parts: keep the text ones
            return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    raise TypeError(f"completion must be a string or a list of message dicts, got {type(completion).__name__}")


def _column(columns: dict[str, Any], name: str, size: int) -> list:
    if name not in columns:
        raise KeyError(f"the reward needs a dataset column {name!r}; got columns {sorted(columns)}")
    values = list(columns[name])
    if len(values) != size:
        raise ValueError(f"column {name!r} has {len(values)} values for {size} completions")
    return values


def as_trl_reward(
    reward: MemoryRetentionReward | RxlmReward,
    *,
    reference_column: str = "reference",
    saved_column: str = "saved",
    mode_column: str | None = "mode",
    query_column: str = "query",
    history_column: str = "history",
    statistics: WordStatistics | None = None,
    name: str = "memory_retention",
    log_components: bool = True,
) -> Callable[..., list[float]]:
    """Wrap the composite reward for ``GRPOTrainer(reward_funcs=[...])``.

    Each row needs the reference answer and the saved data as text columns; ``mode_column`` (if present in
    the dataset) gives each row's mode, else ``"standard"``. A reward that pays for memory tokens also needs
    the follow-up's query and the earlier interactions (``history_column``: a list of ``query answer``
    texts); ``statistics`` names the template words. Component means are logged through TRL's
    ``log_metric`` as ``<name>/<component>`` when the trainer provides it.
    """
    templates = reward.template_words(statistics) if reward.uses_memory_targets else frozenset()

    def reward_func(prompts: list, completions: list, **columns: Any) -> list[float]:
        size = len(completions)
        answers = [completion_text(c) for c in completions]
        references = [completion_text(r) for r in _column(columns, reference_column, size)]
        saved = [completion_text(s) for s in _column(columns, saved_column, size)]
        modes = _column(columns, mode_column, size) if mode_column and mode_column in columns else "standard"
        targets = None
        if reward.uses_memory_targets:
            queries, histories = _column(columns, query_column, size), _column(columns, history_column, size)
            targets = [memory_target(r, q, h, templates) for r, q, h in zip(references, queries, histories)]
        out = reward.score_texts(answers, references, saved, modes=modes, memory_targets=targets)
        log_metric = columns.get("log_metric")
        if log_components and callable(log_metric):
            for key, value in out.means().items():
                if key != "reward":
                    log_metric(f"{name}/{key}", value)
        return [float(r) for r in out.reward.tolist()]

    reward_func.__name__ = reward_func.__qualname__ = name
    return reward_func


def as_trl_fact_recall(facts_column: str = "facts", name: str = "fact_recall") -> Callable[..., list[float]]:
    """Fact recall as a TRL reward (log it with weight 0 to watch it without optimising it)."""

    def reward_func(prompts: list, completions: list, **columns: Any) -> list[float]:
        facts = _column(columns, facts_column, len(completions))
        return [fact_recall(completion_text(c), list(f or [])) for c, f in zip(completions, facts)]

    reward_func.__name__ = reward_func.__qualname__ = name
    return reward_func
