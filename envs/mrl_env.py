"""``MrlEnv``: one MRL episode at a time, as a Gymnasium environment (text or token-id actions).

It is a one-episode view of :class:`~rxmrl.envs.BatchedMrlEnv`: the batched env (of one episode, in the
same mode) steps, scores and keeps the running mean; this class draws the episode with Gymnasium's
``np_random``, checks the action and speaks the Gymnasium API (spaces, observation, ``info``, ``render``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rxmrl.data import EMBEDDED, Episode
from rxmrl.envs.batched import BatchedMrlEnv, BatchStep
from rxmrl.envs.episodes import DrawnEpisode, cut_to_steps, is_long_range
from rxmrl.envs.plan import step_plan
from rxmrl.envs.rows import SAVED_DATA, MalformedActionError
from rxmrl.envs.spaces import NaturalText, token_ids_space
from rxmrl.rewards import RewardConfig, SimilarityBackend, WordStatistics
from rxmrl.tokenizer import RxTokenizer

MODES: tuple[str, ...] = ("text", "token")
__all__ = ["MODES", "SAVED_DATA", "MalformedActionError", "MrlEnv", "validate_token_ids"]


class MrlEnv(gym.Env):
    """Memory Reinforcement Learning over curriculum episodes: save an interaction, answer follow-ups from memory.

    ## Description
    One episode is one curriculum row: a first interaction (query + answer) to save, then ``steps``
    follow-up queries that ask about what was said (the row may hold more follow-ups; the first ``steps``
    are used, the curriculum stage). Memory lives inside the agent: the observation never repeats earlier
    turns, so an agent scores well only if it remembers them. After each answer the agent writes the
    interaction into its memory -- its own answer, or the reference answer under teacher forcing
    (``info["write_to_memory"]`` says which text).

    ## Saved data, mode and running mean of each step
    Interactions are indexed 0 = the saved first interaction, ``k >= 1`` = follow-up ``k - 1``; step ``i``
    answers follow-up ``i`` and writes interaction ``i + 1``::

        strategy     step i              mode         saved data S                 running mean folds in, before the step
        cumulative   0                   standard     interaction 0 (first)        -- (no mean: first-step factors)
        cumulative   i >= 1              standard     interaction i                interaction i-1
                                                      (follow-up i-1)              (i = 1: the first interaction)
        long-range   0 (topic switch)    negative     interaction 0                --
        long-range   0 < i < steps-1     standard     interaction i                interaction i-1
        long-range   steps-1 (final)     long_range   interaction 0                interaction i-1

    ``saved_data="conversation"`` (the default) takes interactions as the data set has them (follow-up
    queries with their reference answers), whatever the agent wrote into memory: the reward then measures
    how well the answer matches the true conversation. ``saved_data="as_written"`` is the reference
    design's scoring: interaction ``k >= 1`` as written into memory, the agent's own answer (or the
    reference under teacher forcing). It has an exploit: an agent answering the same text at every step is
    scored against its own previous answer and gains credit for consistency, not memory (a constant string
    of random tokens climbs from 0.3 to 5.5 of 10 over four steps of ``default``). Memory always receives
    what the agent wrote (the reference under teacher forcing). The running mean is ``m <- e`` on its first
    update and ``m <- 0.8 e + 0.2 m`` afterwards (:class:`rxmrl.rewards.RunningMean`), in the reward's
    embedding space (a reward's ``running_mean_new_weight`` replaces 0.8: ``rxlm``'s decay). A reward that pays for memory tokens (preset ``memory``) also gets each step's
    :class:`rxmrl.rewards.MemoryTarget`, from the data's conversation, with template words from
    ``word_statistics`` (default: every interaction of the curriculum's train split of the env's config).

    ## Action Space
    ``mode="text"``: the answer as a string, :class:`NaturalText` of 0..``max_answer_chars`` characters.
    ``mode="token"``: the answer as a 1-D integer array of token ids in ``[0, vocab_size)``, at most
    ``max_answer_tokens`` long, as the decoder emits it (conventionally ``[A] a-tokens [EOS]``; the default
    reward ignores special tokens). Malformed actions raise :class:`MalformedActionError` and change nothing.

    ## Observation Space
    A ``Dict`` with ``saved_query``, ``saved_answer`` (the first interaction; filled by ``reset`` only, empty
    afterwards) and ``query`` (the next follow-up query; empty once the episode has ended). Text mode:
    strings; token mode: ``int64`` arrays, queries as ``[BOS][Q] q`` and the saved answer as ``[A] a [EOS]``.

    ## Rewards
    The preset's reward (``rxmrl.rewards.PRESETS``, default ``default``, 0-10) of the answer against the
    follow-up's reference answer and the saved data S, in the mode above; ``memory`` pays mostly for the
    step's memory tokens (the reference's words that only the earlier interactions hold); or any reward
    callable (see :mod:`rxmrl.envs.scoring`). Token mode scores ids directly (the sentence encoder decodes
    them to text itself); text mode scores strings.

    ## Starting State
    ``reset`` draws the next episode of the stage's pool: shuffled per seed (``order="shuffled"``) or in row
    order (``order="sequential"``, for evaluation); ``mixed`` strategies draw long-range episodes with
    probability ``long_range_ratio``. ``options``: ``episode`` (an :class:`Episode` to play), ``episode_index``
    (+ ``long_range``) (a row of the pool), ``teacher_forcing`` (for this episode).

    ## Episode End
    ``terminated`` after the answer to the last follow-up; never truncated.

    ## Info
    ``reset``: ``episode`` (the cut :class:`Episode`), ``episode_index``, ``long_range``, ``steps``, ``modes``.
    ``step``: ``step``, ``mode``, ``query``, ``answer`` (text), ``reference``, ``saved_data`` (text of S),
    ``saved_index``, ``running_mean_of`` (interaction indices folded so far), ``facts``, ``fact_recall`` (of the
    answer; ``None`` when the step asks no fact), ``held_fact_recall`` (of the facts memory holds: their source
    interaction as written states them; ``None`` when none), ``final_recall`` (``fact_recall`` on a long-range
    final question, the one about the first interaction; ``None`` on every other step), ``reward_components``
    (name -> float),
    ``teacher_forcing``, ``write_to_memory`` (the answer text to write) and, in token mode,
    ``write_to_memory_ids`` (a tuple of ids: Gymnasium's vector envs batch it as one object per env, which
    a variable-length array cannot be).

    ## Vector envs
    ``gymnasium.make_vec(id, num_envs, mode="token", ...)`` works in ``sync`` and ``async`` mode; token mode's
    observations vary in length, so ``async`` needs ``vector_kwargs={"shared_memory": False}``; add
    ``"context": "spawn"`` in a process that has already run torch (forking its worker threads' locks can
    hang the workers).

    ## Arguments
    ``source``, ``steps``, ``split``, ``config``, ``num_episodes``, ``data_seed``: the curriculum data
    (:func:`rxmrl.data.load_curriculum`); ``episodes``: hand-made episodes instead (their ``strategy``
    picks the pool); ``strategy``: ``cumulative`` | ``long_range`` | ``mixed`` (default: from the config);
    ``reward``: preset name, :class:`RewardConfig` or callable; ``similarity``: ``encoder`` |
    ``random-embedding`` | a backend (:data:`rxmrl.envs.scoring.SIMILARITIES`); ``saved_data``:
    ``conversation`` | ``as_written``; ``word_statistics``: the corpus of the memory tokens' template
    words; ``teacher_forcing``; ``order``; ``mode``; ``tokenizer`` (default: the embedded one).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, source: str | os.PathLike = EMBEDDED, steps: int | None = 8, split: str = "train", *,
                 config: str | None = None, strategy: str | None = None, long_range_ratio: float = 0.5,
                 episodes: Sequence[Episode] | None = None, num_episodes: int | None = None, data_seed: int = 0,
                 reward: str | RewardConfig | Callable[..., Any] = "default",
                 similarity: str | SimilarityBackend = "encoder", tokenizer: RxTokenizer | None = None,
                 teacher_forcing: bool = False, order: str = "shuffled", mode: str = "text",
                 max_answer_chars: int = 4096, max_answer_tokens: int = 1024, max_text_chars: int = 16384,
                 saved_data: str = "conversation", word_statistics: WordStatistics | None = None,
                 render_mode: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'ansi'")
        self.mode, self.render_mode, self.teacher_forcing = mode, render_mode, teacher_forcing
        self.max_answer_chars, self.max_answer_tokens = max_answer_chars, max_answer_tokens
        self.core = BatchedMrlEnv(1, source, steps, split, config=config, strategy=strategy,
                                  long_range_ratio=long_range_ratio, episodes=episodes, num_episodes=num_episodes,
                                  data_seed=data_seed, reward=reward, similarity=similarity, tokenizer=tokenizer,
                                  teacher_forcing=teacher_forcing, order=order, max_answer_tokens=max_answer_tokens,
                                  saved_data=saved_data, word_statistics=word_statistics, mode=mode)
        self.tokenizer, self.vocab_size = self.core.tokenizer, self.core.vocab_size
        self.saved_data, self.steps = self.core.saved_data, self.core.steps
        if mode == "text":
            text = NaturalText(max_text_chars)
            self.observation_space = spaces.Dict(saved_query=text, saved_answer=text, query=text)
            self.action_space = NaturalText(max_answer_chars)
        else:
            ids = token_ids_space(self.vocab_size)
            self.observation_space = spaces.Dict(saved_query=ids, saved_answer=ids, query=ids)
            self.action_space = token_ids_space(self.vocab_size)
        self._drawn: DrawnEpisode | None = None
        self._last_info: dict[str, Any] | None = None

    # The episode data, reward and corpus statistics are the core's: one home for each.
    sampler = property(lambda self: self.core.sampler)
    scorer = property(lambda self: self.core.scorer)
    reward = property(lambda self: self.core.reward)
    statistics = property(lambda self: self.core.statistics)

    # ---------------------------------------------------------------------------------------------- reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        if seed is not None:
            self.sampler.restart()
        self._drawn = self._choose_episode(options)
        episode, long_range = self._drawn.episode, self._drawn.long_range
        self._teacher_forcing = bool(options.get("teacher_forcing", self.teacher_forcing))
        self.core.reset(options={"episodes": [episode], "long_range": [long_range],
                                 "teacher_forcing": self._teacher_forcing})
        self._step = 0
        self._texts = {"conversation": [f"{episode.query} {episode.answer}"]
                       + [f"{f.query} {f.answer}" for f in episode.interactions]}
        self._texts["as_written"] = self._texts["conversation"][:1]
        self._last_info = None
        observation = self._observation(episode.query, episode.answer, episode.interactions[0].query)
        info = {"episode": episode, "episode_index": self._drawn.index, "long_range": long_range,
                "steps": self.steps, "modes": [spec.mode for spec in step_plan(self.steps, long_range)]}
        return observation, info

    def _choose_episode(self, options: dict[str, Any]) -> DrawnEpisode:
        if "episode" in options:
            episode = options["episode"]
            if not isinstance(episode, Episode):
                raise TypeError(f"options['episode'] is {type(episode).__name__}, expected an rxmrl.data.Episode")
            long_range = bool(options.get("long_range", is_long_range(episode)))
            return DrawnEpisode(cut_to_steps(episode, self.steps, long_range, "options['episode']"), long_range, -1)
        if "episode_index" in options:
            long_range = bool(options.get("long_range", self.sampler.strategy == "long_range"))
            pool = self.sampler.pools[long_range]
            index = options["episode_index"]
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(pool):
                raise IndexError(f"options['episode_index']={index!r}: expected 0..{len(pool) - 1}")
            return DrawnEpisode(pool[int(index)], long_range, int(index))
        return self.sampler.draw(self.np_random)

    # ----------------------------------------------------------------------------------------------- step
    def step(self, action):
        if self._drawn is None:
            raise RuntimeError("call reset() before step()")
        if self._step >= self.steps:
            raise RuntimeError(f"the episode ended after {self.steps} steps: call reset() to start a new one")
        answer_text, answer_ids = self._validate(action)
        out = self.core.step([answer_text] if self.mode == "text" else [answer_ids.tolist()])
        follow_up = self._drawn.episode.interactions[self._step]
        written_answer = follow_up.answer if self._teacher_forcing else answer_text
        self._texts["as_written"].append(f"{follow_up.query} {written_answer}")
        info = self._step_info(out, follow_up, answer_text, written_answer)
        self._step += 1
        terminated = self._step == self.steps
        next_query = "" if terminated else self._drawn.episode.interactions[self._step].query
        self._last_info = info
        return self._observation("", "", next_query), float(out.rewards[0]), terminated, False, info

    def _step_info(self, out: BatchStep, follow_up, answer_text: str, written_answer: str) -> dict[str, Any]:
        """The step's ``info`` (see the class docstring) from the core's step of this one episode."""
        facts = self._drawn.episode.facts
        saved_index = int(out.saved_index[0])
        folded = [spec.running_mean_update for spec in step_plan(self.steps, self._drawn.long_range)[:self._step + 1]]
        info = {
            "step": self._step, "mode": out.modes[0], "query": follow_up.query, "answer": answer_text,
            "reference": follow_up.answer, "saved_data": self._texts[self.saved_data][saved_index],
            "saved_index": saved_index, "running_mean_of": tuple(i for i in folded if i is not None),
            "facts": [] if facts is None else [f.text for f in facts[self._step]],
            "fact_recall": _none_if_nan(float(out.fact_recall[0])),
            "held_fact_recall": _none_if_nan(float(out.held_fact_recall[0])),
            "final_recall": _none_if_nan(float(out.final_recall[0])),
            "reward_components": {k: float(v[0]) for k, v in out.components.items()},
            "teacher_forcing": self._teacher_forcing, "write_to_memory": written_answer,
        }
        if self.mode == "token":
            info["write_to_memory_ids"] = tuple(out.write_to_memory.to_lists()[0])
        return info

    def _validate(self, action) -> tuple[str, np.ndarray | None]:
        if self.mode == "text":
            if not isinstance(action, str):
                raise MalformedActionError(f"action is {type(action).__name__}, expected a str answer (text mode)")
            if len(action) > self.max_answer_chars:
                raise MalformedActionError(f"answer has {len(action)} characters, expected at most "
                                           f"{self.max_answer_chars}")
            if not self.action_space.contains(action):
                bad = next(c for c in action if c not in self.action_space.character_set)
                raise MalformedActionError(f"answer holds {bad!r}, which is not natural text")
            return action, None
        ids = validate_token_ids(action, self.vocab_size, self.max_answer_tokens)
        return self.tokenizer.decode(ids.tolist()), ids

    # ------------------------------------------------------------------------------------------- helpers
    def _observation(self, saved_query: str, saved_answer: str, query: str) -> dict[str, Any]:
        if self.mode == "text":
            return {"saved_query": saved_query, "saved_answer": saved_answer, "query": query}
        encode = self.tokenizer
        as_ids = lambda ids: np.asarray(ids, np.int64)  # noqa: E731
        return {
            "saved_query": as_ids(encode.encode_query(saved_query) if saved_query else []),
            "saved_answer": as_ids(encode.encode_answer(saved_answer) if saved_answer else []),
            "query": as_ids(encode.encode_query(query) if query else []),
        }

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._drawn is None:
            return None
        episode, info = self._drawn.episode, self._last_info
        if info is None:
            return f"saved: Q: {episode.query}\n  A: {episode.answer}\nnext query: {episode.interactions[0].query}"
        return (f"step {info['step']} [{info['mode']}] Q: {info['query']}\n  A: {info['answer']}\n"
                f"  reference: {info['reference']}\n  saved: {info['saved_data']}")


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def validate_token_ids(action: Any, vocab_size: int, max_length: int) -> np.ndarray:
    """A 1-D ``int64`` array of ids in ``[0, vocab_size)`` of at most ``max_length``, or a clear error."""
    if isinstance(action, torch.Tensor):
        action = action.detach().cpu().numpy()
    if isinstance(action, (list, tuple)):
        if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in action):
            raise MalformedActionError(f"answer ids {action!r:.80} hold non-integers, expected token ids")
        action = np.asarray(action, dtype=np.int64)
    if not isinstance(action, np.ndarray):
        raise MalformedActionError(f"action is {type(action).__name__}, expected a 1-D array of token ids "
                                   "(token mode)")
    if action.ndim != 1 or not np.issubdtype(action.dtype, np.integer):
        raise MalformedActionError(f"answer ids have shape {action.shape} and dtype {action.dtype}, "
                                   "expected a 1-D integer array")
    if len(action) > max_length:
        raise MalformedActionError(f"answer has {len(action)} tokens, expected at most {max_length}")
    if len(action) and (action.min() < 0 or action.max() >= vocab_size):
        raise MalformedActionError(f"answer ids span [{action.min()}, {action.max()}], expected ids in "
                                   f"[0, {vocab_size})")
    return action.astype(np.int64)
