"""``StatelessAgent``: the baseline LLM in the MRL environment, re-reading the conversation every turn.

It has the environment's agent interface (``begin_episode`` / ``answer`` / ``remember``, and the batched
``begin_batch`` / ``answer_batch`` / ``remember_batch``), but its "memory" is only the history it is handed
back: each turn the prompt is the whole history so far (the saved first interaction, then every follow-up
as the environment said to write it) plus the new query, cut from the left to fit the context
(:func:`rxmrl.baseline.data.fit_history`). The prompt, and so the cost of a turn, grows with the
conversation; an RxT agent's prompt is the query alone.

Generation is Hugging Face ``generate`` with its KV cache, greedy unless a ``sampling`` is given. Each answered turn
leaves a :class:`TurnRecord` (prompt tokens, new tokens, seconds, what truncation dropped) in ``records``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rxmrl.baseline.data import answer_row, completion_ids, fit_history, history_turn, query_ids, turn_ids
from rxmrl.data.schema import Episode, Interaction
from rxmrl.envs.agents import Agent
from rxmrl.model.interaction import answer_prompt
from rxmrl.model.sampling import GREEDY, SamplingConfig
from rxmrl.special_tokens import EOS_ID, PAD_ID

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from rxmrl.envs.batched import BatchReset
    from rxmrl.envs.padded import PaddedIds

    from rxmrl.tokenizer import RxTokenizer


@dataclass(frozen=True)
class TurnRecord:
    turn: int  # 0 = the first follow-up of the episode
    prompt_tokens: int  # tokens the model read before answering (after truncation)
    new_tokens: int  # answer tokens generated (incl. [EOS] when reached)
    seconds: float  # wall time of the whole turn: prompt processing + decoding
    dropped_tokens: int  # history tokens cut to fit the context


@torch.no_grad()
def generate_answers(model: PreTrainedModel, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                     sampling: SamplingConfig | None = None, min_new_tokens: int = 0) -> list[list[int]]:
    """Answer ids after each prompt (ending ``[A]``), up to and including ``[EOS]``, via ``generate``:
    greedy, or sampled as ``sampling`` says (temperature, then top-k, then top-p, as RxT samples).

    Prompts are left-padded so every row's next token lands in the same column; ``generate`` derives the
    positions from the attention mask, so padding does not shift them.
    """
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)  # [B, P]
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    sampling = sampling or GREEDY
    drawn = {"do_sample": False} if sampling.greedy else {  # top_k 0 / top_p 1: that filter off
        "do_sample": True, "temperature": sampling.temperature, "top_k": sampling.top_k or 0,
        "top_p": sampling.top_p if sampling.top_p is not None else 1.0}
    output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, eos_token_id=EOS_ID,
                            pad_token_id=PAD_ID, use_cache=True, **drawn)
    answers = []
    for row in output[:, width:].tolist():  # [B, new]
        answers.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else row)
    return answers


class StatelessAgent(Agent):
    """A decoder-only LM that answers each follow-up from the full history (see the module docstring)."""

    name = "stateless"

    def __init__(self, model: PreTrainedModel, tokenizer: RxTokenizer | None = None, *,
                 max_new_tokens: int = 64, context_length: int | None = None,
                 sampling: SamplingConfig | None = None, seed: int = 0) -> None:
        super().__init__(tokenizer)
        self.model = model.eval()
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length or model.config.max_position_embeddings
        if self.context_length <= max_new_tokens + 2:
            raise ValueError(f"context_length={self.context_length} leaves no room for a prompt next to "
                             f"max_new_tokens={max_new_tokens}")
        self.sampling, self.seed = sampling or GREEDY, seed
        self.history: list[list[int]] = []  # finished turns as [Q] q [A] a [EOS] ids, oldest first
        self.records: list[TurnRecord] = []

    def begin_episode(self, saved_query: str, saved_answer: str, episode: Episode | None = None) -> None:
        """Start a new conversation whose first turn is the interaction to save (``episode`` is unused)."""
        torch.manual_seed(self.seed)
        self.history = [turn_ids(self.tokenizer, Interaction(saved_query, saved_answer))]
        self.records = []

    def prompt_ids(self, query: str) -> tuple[list[int], int]:
        """The prompt for ``query`` and how many history tokens were dropped to fit the context."""
        prompt = fit_history(self.history, query_ids(self.tokenizer, query),
                             self.context_length - self.max_new_tokens)
        return prompt.ids, prompt.dropped_tokens

    def answer(self, query: str) -> str:
        started = time.perf_counter()
        prompt, dropped = self.prompt_ids(query)
        answer = self._generate([prompt])[0]
        self.records.append(TurnRecord(len(self.records), len(prompt), len(answer),
                                       time.perf_counter() - started, dropped))
        return self.tokenizer.decode(answer)

    def remember(self, query: str, answer: str) -> None:
        """Append the finished turn (as the environment says to write it) to the history."""
        answer_ids = completion_ids(self.tokenizer, answer)
        self.history.append([*query_ids(self.tokenizer, query), *answer_ids])

    # batched form: B conversations on padded ids (queries [BOS][Q] q, answers [A] a [EOS])
    def begin_batch(self, start: BatchReset) -> None:
        torch.manual_seed(self.seed)
        self.batch_history = [[turn] for turn in _turns(start.saved_query, start.saved_answer)]

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        from rxmrl.envs.padded import PaddedIds

        budget = self.context_length - self.max_new_tokens
        prompts = [fit_history(history, history_turn(answer_prompt(query)), budget).ids
                   for history, query in zip(self.batch_history, queries.to_lists(), strict=True)]
        answers = self._generate(prompts)
        return PaddedIds.from_lists([answer_row(answer) for answer in answers], queries.ids.device)

    def remember_batch(self, queries: PaddedIds, answers: PaddedIds) -> None:
        for history, turn in zip(self.batch_history, _turns(queries, answers), strict=True):
            history.append(turn)

    def _generate(self, prompts: list[list[int]]) -> list[list[int]]:
        return generate_answers(self.model, prompts, self.max_new_tokens, sampling=self.sampling)


def _turns(queries: PaddedIds, answers: PaddedIds) -> list[list[int]]:
    """``[BOS][Q] q`` + ``[A] a [EOS]`` rows -> history turns ``[Q] q [A] a [EOS]``."""
    return [history_turn(q) + a for q, a in zip(queries.to_lists(), answers.to_lists(), strict=True)]


def load_stateless_agent(directory: str | Path, device: str = "cpu", **kwargs) -> StatelessAgent:
    """The agent of a folder written by ``rxmrl baseline train`` (model + tokenizer)."""
    from rxmrl.baseline.train import load_baseline

    model, tokenizer = load_baseline(directory, device)
    return StatelessAgent(model, tokenizer, **kwargs)


def is_baseline_checkpoint(directory: str | Path) -> bool:
    """True for a folder holding a Hugging Face causal LM (``model_type`` in its ``config.json``), which
    ``rxmrl eval --agent FOLDER`` should load as a :class:`StatelessAgent` rather than an RxT."""
    from rxmrl.model.folder import inspect_folder

    return inspect_folder(directory).kind == "baseline"
