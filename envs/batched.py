"""``BatchedMrlEnv``: B MRL episodes stepped together on padded token-id tensors, for the trainer.

The one home of stepping, scoring and the running mean: :class:`~rxmrl.envs.MrlEnv` is a view of this class
with one episode (``mode="text"`` holds texts instead of ids, :mod:`rxmrl.envs.rows`). One batched reward
call per step, with the plan of :mod:`rxmrl.envs.plan`; in token mode interactions are ``[B, L]`` tensors::

    env = BatchedMrlEnv(16, steps=4, split="train")
    start = env.reset(seed=0)              # start.saved_interaction, start.query: PaddedIds
    while True:
        answers = policy(start.query if first else out.next_query)   # PaddedIds of [A] a [EOS] rows
        out = env.step(answers)            # out.rewards [B], out.components, out.write_to_memory, ...
        if out.done: break

All episodes of a batch have the stage's number of steps, so they end together.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from gymnasium.utils import seeding

from rxmrl.data import EMBEDDED, Episode, default_tokenizer
from rxmrl.envs.episodes import DrawnEpisode, cut_to_steps, is_long_range, make_sampler
from rxmrl.envs.padded import PaddedIds
from rxmrl.envs.plan import step_plan
from rxmrl.envs.rows import IdRows, TextRows, check_saved_data
from rxmrl.envs.scoring import RewardScorer, StatisticsSource, build_reward, memory_targets_of
from rxmrl.rewards import (RewardConfig, RunningMean, SimilarityBackend, WordStatistics, fact_recall,
                           held_fact_recall)
from rxmrl.tokenizer import RxTokenizer


@dataclass
class BatchReset:
    """What the agent sees at the start: the interactions to save and the first follow-up queries."""

    saved_query: PaddedIds  # [BOS][Q] q
    saved_answer: PaddedIds  # [A] a [EOS]
    saved_interaction: PaddedIds  # saved_query + saved_answer: what the memory encoder reads first
    query: PaddedIds  # the first follow-up queries, [BOS][Q] q
    episodes: list[Episode]
    long_range: torch.Tensor  # [B] bool
    modes: list[list[str]]  # modes[b][i]: reward mode of step i of episode b
    episode_indices: list[int]  # rows in their pools (-1: given in options)


@dataclass
class BatchStep:
    """One step's results for the B episodes."""

    step: int
    rewards: torch.Tensor  # [B] float32, 0..scale
    components: dict[str, torch.Tensor]  # name -> [B]
    modes: list[str]  # [B]
    saved_index: torch.Tensor  # [B] interaction index of each row's saved data
    reference: PaddedIds  # the follow-ups' reference answers, [A] a [EOS]
    write_to_memory: PaddedIds  # answer ids to write with query: own answers, or references (teacher forcing)
    written_interaction: PaddedIds  # query + write_to_memory: the interaction the memory encoder reads
    fact_recall: torch.Tensor  # [B] float32; NaN where the step asks no fact (or the data has none)
    held_fact_recall: torch.Tensor  # [B] recall of the facts memory holds (rxmrl.rewards.held_fact_recall); NaN: none
    final_recall: torch.Tensor  # [B] fact recall of the long-range final question; NaN on other steps, cumulative rows
    terminated: torch.Tensor  # [B] bool
    next_query: PaddedIds | None  # the next follow-up queries; None after the last step

    @property
    def done(self) -> bool:
        return bool(self.terminated.all())


@dataclass
class GroupScores:
    """Rewards of answers to the current step, without moving on (``score_alternatives``); rows in the
    order given (``b·G + g``)."""

    rewards: torch.Tensor  # [B·G] float32, 0..scale
    components: dict[str, torch.Tensor]  # name -> [B·G]
    modes: list[str]  # [B·G]
    saved_index: torch.Tensor  # [B·G]
    fact_recall: torch.Tensor  # [B·G]; NaN where the step asks no fact (or the data has none)
    held_fact_recall: torch.Tensor  # [B·G]; NaN where memory holds none of the step's facts
    final_recall: torch.Tensor  # [B·G]; NaN where the step is not a long-range final question


class BatchedMrlEnv:
    """B episodes of one curriculum stage at a time; arguments as :class:`~rxmrl.envs.MrlEnv` (``saved_data``,
    ``word_statistics``), plus ``batch_size``, ``seed`` (the episode-order generator), ``device`` and
    ``compute_fact_recall``. ``mode="token"`` (the trainer's) holds queries, answers and interactions as
    :class:`PaddedIds`; ``mode="text"`` as lists of strings, scored as strings (``MrlEnv``'s text mode, a
    one-episode view of this class)."""

    def __init__(self, batch_size: int, source: str | os.PathLike = EMBEDDED, steps: int | None = 8,
                 split: str = "train", *, config: str | None = None, strategy: str | None = None,
                 long_range_ratio: float = 0.5, episodes: Sequence[Episode] | None = None,
                 num_episodes: int | None = None, data_seed: int = 0,
                 reward: str | RewardConfig | Callable[..., Any] = "default",
                 similarity: str | SimilarityBackend = "encoder", tokenizer: RxTokenizer | None = None,
                 teacher_forcing: bool = False, order: str = "shuffled", seed: int | None = None,
                 device: torch.device | str = "cpu", compute_fact_recall: bool = True,
                 max_answer_tokens: int = 1024, saved_data: str = "conversation",
                 word_statistics: WordStatistics | None = None, mode: str = "token") -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive int")
        if mode not in ("text", "token"):
            raise ValueError(f"mode={mode!r}: expected one of text, token")
        self.saved_data = check_saved_data(saved_data)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.teacher_forcing, self.compute_fact_recall = teacher_forcing, compute_fact_recall
        self.max_answer_tokens = max_answer_tokens
        self.tokenizer = tokenizer if tokenizer is not None else default_tokenizer()
        self._rows = IdRows(self.tokenizer, self.device) if mode == "token" else TextRows()
        self.vocab_size = self.tokenizer.vocab_size
        self.sampler = make_sampler(source, steps, split, config, strategy, long_range_ratio, episodes,
                                    num_episodes, data_seed, order)
        self.steps = self.sampler.steps
        self.reward = build_reward(reward, similarity, self.tokenizer)
        self.scorer = RewardScorer(self.reward)
        self.statistics = StatisticsSource(source, config, self.steps, episodes, self.sampler, word_statistics)
        self.np_random, _ = seeding.np_random(seed)
        self._step: int | None = None

    def set_reward(self, reward: Callable[..., Any]) -> None:
        """Score with another ready reward (e.g. one over a model's embeddings, known only after loading it)."""
        self.reward = reward
        self.scorer = RewardScorer(reward)

    # ---------------------------------------------------------------------------------------------- reset
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> BatchReset:
        """Draws the next B episodes (``options``: ``episodes`` to play instead, with ``long_range`` (one bool
        per episode; default: each episode's own strategy), ``batch_size`` for this batch only,
        ``teacher_forcing``)."""
        options = dict(options or {})
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
            self.sampler.restart()
        if "episodes" in options:
            given = list(options["episodes"])
            if not given or not all(isinstance(e, Episode) for e in given):
                raise TypeError("options['episodes'] must be a non-empty list of rxmrl.data.Episode")
            flags = list(options.get("long_range", [is_long_range(e) for e in given]))
            drawn = [DrawnEpisode(cut_to_steps(e, self.steps, lr, f"options['episodes'][{b}]"), lr, -1)
                     for b, (e, lr) in enumerate(zip(given, flags, strict=True))]
        else:
            count = int(options.get("batch_size", self.batch_size))
            drawn = [self.sampler.draw(self.np_random) for _ in range(count)]
        self._episodes = [d.episode for d in drawn]
        self._long_range = torch.tensor([d.long_range for d in drawn], dtype=torch.bool, device=self.device)
        self._plans = [step_plan(self.steps, d.long_range) for d in drawn]
        self._teacher_forcing = bool(options.get("teacher_forcing", self.teacher_forcing))
        self._encode_episodes()
        self._step, self._mean_folded = 0, -1
        self._running_mean = RunningMean(self.scorer.running_mean_new_weight)
        self._written = [self._rows.concat(self._saved_query, self._saved_answer)]
        self._written_texts: list[list[str]] = []  # decoded lazily, for held_fact_recall
        self._targets = (memory_targets_of(self.reward, self._episodes, self.steps, self.statistics.get())
                         if self.scorer.uses_memory_targets else None)
        return BatchReset(self._saved_query, self._saved_answer, self._written[0], self._queries[0],
                          list(self._episodes), self._long_range.clone(),
                          [[s.mode for s in plan] for plan in self._plans], [d.index for d in drawn])

    def _encode_episodes(self) -> None:
        """Tokenises every query and reference of the batch once (one ``encode_batch`` per column and step)."""
        episodes, rows = self._episodes, self._rows
        self._saved_query = rows.queries([e.query for e in episodes])
        self._saved_answer = rows.answers([e.answer for e in episodes])
        follow_ups = [[e.interactions[i] for e in episodes] for i in range(self.steps)]
        self._queries = [rows.queries([f.query for f in step]) for step in follow_ups]
        self._references = [rows.answers([f.answer for f in step]) for step in follow_ups]

    # ----------------------------------------------------------------------------------------------- step
    def step(self, answers: PaddedIds | torch.Tensor, lengths: torch.Tensor | None = None) -> BatchStep:
        """Scores the B answers (``[B, L]`` ids + ``[B]`` lengths), writes them, and gives the next queries."""
        self._require_step()
        answers = self._validate(answers, lengths)
        i, batch = self._step, len(self._episodes)
        scored = self._score(answers, 1)
        reference = self._references[i]
        written_answer = reference if self._teacher_forcing else answers
        written = self._rows.concat(self._queries[i], written_answer)
        self._written.append(written)
        self._step += 1
        done = self._step == self.steps
        return BatchStep(
            step=i, rewards=scored.rewards, components=scored.components, modes=scored.modes,
            saved_index=scored.saved_index, reference=reference, write_to_memory=written_answer,
            written_interaction=written, fact_recall=scored.fact_recall, held_fact_recall=scored.held_fact_recall,
            final_recall=scored.final_recall,
            terminated=torch.full((batch,), done, dtype=torch.bool, device=self.device),
            next_query=None if done else self._queries[self._step],
        )

    def score_alternatives(self, answers: PaddedIds | torch.Tensor, lengths: torch.Tensor | None = None, *,
                           group_size: int) -> GroupScores:
        """Scores ``group_size`` answers per episode at the current step -- rows ``b·G .. b·G + G − 1`` answer
        episode b -- all against the same point of the conversation, writing none of them and staying at
        this step: the answers a group estimator compares. ``step`` then takes the one each episode goes on
        with (it scores that one again, identically)."""
        self._require_step()
        if group_size < 1:
            raise ValueError(f"group_size={group_size}: expected >= 1")
        return self._score(self._validate(answers, lengths, rows=len(self._episodes) * group_size), group_size)

    def current_references(self) -> PaddedIds:
        """The current step's reference answers, ``[A] a [EOS]`` rows: a candidate answer of its own (DMPO's
        accepted answer) before the step is taken."""
        self._require_step()
        return self._references[self._step]

    def _require_step(self) -> None:
        if self._step is None:
            raise RuntimeError("call reset() before step()")
        if self._step >= self.steps:
            raise RuntimeError(f"the episodes ended after {self.steps} steps: call reset() to start new ones")

    def _score(self, answers: PaddedIds, repeat: int) -> GroupScores:
        """One reward call for ``B · repeat`` answers of the current step (``repeat`` consecutive rows each)."""
        i = self._step
        specs = [plan[i] for plan in self._plans]
        self._fold_running_mean(i, specs)
        saved_index = torch.tensor([s.saved_index for s in specs], dtype=torch.long, device=self.device)
        saved = self._rows.select(saved_index == 0, self._written[0], self._scored_interaction(i))
        reference, mean = self._references[i], self._running_mean
        targets = None if self._targets is None else [rows[i] for rows in self._targets]
        modes = [s.mode for s in specs]
        if repeat > 1:
            reference, saved = self._rows.repeat(reference, repeat), self._rows.repeat(saved, repeat)
            modes = [m for m in modes for _ in range(repeat)]
            targets = None if targets is None else [t for t in targets for _ in range(repeat)]
        values = None if mean.value is None else mean.value.repeat_interleave(repeat, 0)
        present = None if mean.present is None else mean.present.repeat_interleave(repeat, 0)
        scores = self._rows.score(self.scorer, answers, reference, saved, modes, (values, present), targets)
        if self.compute_fact_recall:
            recall, held, final = self._fact_recall(answers, i, repeat)
        else:
            recall = held = final = torch.full((len(answers),), math.nan)
        return GroupScores(rewards=scores.reward.to(self.device),
                           components={k: v.to(self.device) for k, v in scores.components.items()}, modes=modes,
                           saved_index=saved_index.repeat_interleave(repeat), fact_recall=recall.to(self.device),
                           held_fact_recall=held.to(self.device), final_recall=final.to(self.device))

    def _scored_interaction(self, index: int) -> PaddedIds:
        """Interaction ``index`` as the reward sees it: the data's (``saved_data="conversation"``) or as
        written into memory (``"as_written"``). Index 0, the saved interaction, is the same either way."""
        if index == 0 or self.saved_data == "as_written":
            return self._written[index]
        return self._rows.concat(self._queries[index - 1], self._references[index - 1])

    def _fold_running_mean(self, step: int, specs) -> None:
        """Before step i, folds interaction i-1 into the rows whose plan says so (once: a retried step does
        not refold; long-range rows start a step later)."""
        if self._mean_folded >= step:
            return
        self._mean_folded = step
        rows = torch.tensor([s.running_mean_update is not None for s in specs], dtype=torch.bool,
                            device=self.device)
        if not bool(rows.any()):
            return
        source = self._scored_interaction(step - 1)
        embedding = self._rows.embed(self.scorer, source)
        if embedding is not None:
            self._running_mean.update(embedding.to(self.device), rows)

    def _fact_recall(self, answers: PaddedIds, step: int,
                     repeat: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B·repeat]`` recall of all the step's facts, of those memory holds (as written so far), and the
        final recall: the first, on the rows whose step is a long-range final question (NaN on the others)."""
        texts = self._rows.texts(answers)
        while len(self._written_texts) < len(self._written):  # interactions 0..step, decoded once each
            self._written_texts.append(self._rows.texts(self._written[len(self._written_texts)]))
        recall, held, final = [], [], []
        for row, text in enumerate(texts):
            b = row // repeat
            facts = self._episodes[b].facts
            written = [interaction[b] for interaction in self._written_texts]
            asked = [] if facts is None else [f.text for f in facts[step] if f.text.strip()]
            recall.append(fact_recall(text, asked) if asked else math.nan)  # a step that asks no fact scores none
            held.append(math.nan if facts is None else held_fact_recall(text, facts[step], written))
            final.append(recall[-1] if self._plans[b][step].final_question else math.nan)
        return tuple(torch.tensor(values, dtype=torch.float32) for values in (recall, held, final))

    def _validate(self, answers: PaddedIds | torch.Tensor, lengths: torch.Tensor | None,
                  rows: int | None = None) -> PaddedIds:
        batch = len(self._episodes) if rows is None else rows
        return self._rows.validate(answers, lengths, batch, self.vocab_size, self.max_answer_tokens)
