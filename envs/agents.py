"""Agents with the one interface the environment loop, the evaluation and the trainer use.

Text form (one conversation, with :class:`~rxmrl.envs.MrlEnv`)::

    agent.begin_episode(saved_query, saved_answer, episode)  # fresh memory, then save the first interaction
    answer = agent.answer(query)
    agent.remember(query, info["write_to_memory"])            # own answer, or the reference (teacher forcing)

Batched form (B conversations on padded ids, with :class:`~rxmrl.envs.BatchedMrlEnv`)::

    agent.begin_batch(start)                                  # start: BatchReset
    answers = agent.answer_batch(queries)                     # PaddedIds of [A] a [EOS] rows
    agent.remember_batch(queries, out.write_to_memory)

``episode`` / ``start.episodes`` are privileged: only the oracle and the random agent look at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from rxmrl.data import Episode, default_tokenizer
from rxmrl.envs.padded import PaddedIds, concat_padded
from rxmrl.special_tokens import ANSWER_ID
from rxmrl.tokenizer import RxTokenizer

if TYPE_CHECKING:
    from rxmrl.envs.batched import BatchReset
    from rxmrl.envs.mrl_env import MrlEnv
    from rxmrl.model.rxt import ReactiveTransformer
    from rxmrl.model.sampling import SamplingConfig


class Agent:
    """Base class: the text form is abstract; the batched form defaults to tokenised text answers."""

    name = "agent"

    def __init__(self, tokenizer: RxTokenizer | None = None) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else default_tokenizer()

    # text form
    def begin_episode(self, saved_query: str, saved_answer: str, episode: Episode | None = None) -> None:
        raise NotImplementedError

    def answer(self, query: str) -> str:
        raise NotImplementedError

    def remember(self, query: str, answer: str) -> None:
        """Write an interaction into memory (stateless agents ignore it)."""

    # batched form
    def begin_batch(self, start: BatchReset) -> None:
        raise NotImplementedError

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        raise NotImplementedError

    def remember_batch(self, queries: PaddedIds, answers: PaddedIds) -> None:
        """Write B interactions into memory (stateless agents ignore it)."""

    def _encode_answers(self, texts: Sequence[str], device: torch.device | str | None = None) -> PaddedIds:
        return PaddedIds.from_lists(self.tokenizer.encode_answer_batch(texts), device)


class OracleAgent(Agent):
    """Answers every follow-up with its reference answer: the top of the reward scale."""

    name = "oracle"

    def begin_episode(self, saved_query: str, saved_answer: str, episode: Episode | None = None) -> None:
        if episode is None:
            raise ValueError("the oracle needs the episode (pass info['episode'] from reset)")
        self._episodes, self._step = [episode], 0

    def answer(self, query: str) -> str:
        return self._references()[0]

    def begin_batch(self, start: BatchReset) -> None:
        self._episodes, self._step = list(start.episodes), 0

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        return self._encode_answers(self._references(), queries.ids.device)

    def _references(self) -> list[str]:
        step = self._step
        self._step += 1
        return [e.interactions[step].answer for e in self._episodes]


class RandomAgent(Agent):
    """Answers with a follow-up answer of *another* episode, drawn uniformly (seeded): fluent, on-genre text
    that knows nothing of this conversation -- the floor a memoryless model should beat."""

    name = "random"

    def __init__(self, answers: Sequence[str] | Sequence[Episode], seed: int = 0,
                 tokenizer: RxTokenizer | None = None) -> None:
        super().__init__(tokenizer)
        pool = [a for e in answers for a in (i.answer for i in e.interactions)] if answers and isinstance(
            answers[0], Episode) else list(answers)
        self.pool = list(dict.fromkeys(pool))
        if len(self.pool) < 2:
            raise ValueError(f"RandomAgent needs at least 2 distinct answers to draw from, got {len(self.pool)}")
        self.rng = np.random.default_rng(seed)
        self._exclude: list[set[str]] = [set()]

    def begin_episode(self, saved_query: str, saved_answer: str, episode: Episode | None = None) -> None:
        self._exclude = [self._own_texts(episode, saved_answer)]

    def answer(self, query: str) -> str:
        return self._draw(self._exclude[0])

    def begin_batch(self, start: BatchReset) -> None:
        self._exclude = [self._own_texts(e, e.answer) for e in start.episodes]

    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        return self._encode_answers([self._draw(own) for own in self._exclude], queries.ids.device)

    @staticmethod
    def _own_texts(episode: Episode | None, saved_answer: str) -> set[str]:
        own = {saved_answer}
        if episode is not None:
            own |= {i.answer for i in episode.interactions}
        return own

    def _draw(self, exclude: set[str]) -> str:
        if len(exclude) >= len(self.pool) and all(a in exclude for a in self.pool):
            raise ValueError("every answer in the pool belongs to the current episode")
        while True:
            answer = self.pool[int(self.rng.integers(len(self.pool)))]
            if answer not in exclude:
                return answer


class RxTAgent(Agent):
    """A Reactive Transformer answering from its STM and writing each interaction into it.

    Memory is reset per episode (``model.initial_stm``), the saved interaction is written first, then each
    answer is generated from the query alone and ``remember`` writes what the environment says to write.
    Answers are returned as ``[A] a [EOS]`` (the model's own ``[EOS]`` kept), the interaction format.
    ``write_memory=False`` is the memory-off ablation: nothing is ever written, every answer comes from the
    fresh STM of its episode.
    """

    name = "rxt"

    def __init__(self, model: ReactiveTransformer, tokenizer: RxTokenizer | None = None, *,
                 max_new_tokens: int = 64, sampling: SamplingConfig | None = None, seed: int = 0,
                 write_memory: bool = True) -> None:
        from rxmrl.model.sampling import GREEDY

        super().__init__(tokenizer)
        self.model = model.eval()
        self.max_new_tokens, self.sampling = max_new_tokens, sampling or GREEDY
        self.write_memory = write_memory
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.stm: torch.Tensor | None = None  # [B, L, S, D]

    # text form: one conversation is a batch of one
    def begin_episode(self, saved_query: str, saved_answer: str, episode: Episode | None = None) -> None:
        tok = self.tokenizer
        self._write_fresh(PaddedIds.from_lists([tok.encode_query(saved_query)]),
                          PaddedIds.from_lists([tok.encode_answer(saved_answer)]))

    def answer(self, query: str) -> str:
        answers = self.answer_batch(PaddedIds.from_lists([self.tokenizer.encode_query(query)]))
        return self.tokenizer.decode(answers.to_lists()[0])

    def remember(self, query: str, answer: str) -> None:
        self.remember_batch(PaddedIds.from_lists([self.tokenizer.encode_query(query)]),
                            PaddedIds.from_lists([self.tokenizer.encode_answer(answer)]))

    # batched form
    def begin_batch(self, start: BatchReset) -> None:
        self._write_fresh(start.saved_query, start.saved_answer)

    @torch.no_grad()
    def answer_batch(self, queries: PaddedIds) -> PaddedIds:
        self._require_memory()
        output = self.model.generate(queries.to_lists(), self.stm, self.max_new_tokens, self.sampling,
                                     generator=self.generator)
        batch = output.tokens.shape[0]
        marker = torch.full((batch, 1), ANSWER_ID, dtype=torch.long, device=output.tokens.device)
        return PaddedIds(torch.cat([marker, output.tokens], dim=1), output.lengths + 1)  # [A] a [EOS]

    @torch.no_grad()
    def remember_batch(self, queries: PaddedIds, answers: PaddedIds) -> None:
        self._require_memory()
        if self.write_memory:
            self.stm = self._write(self.stm, queries, answers)

    def _write_fresh(self, queries: PaddedIds, answers: PaddedIds) -> None:
        fresh = self.model.initial_stm(len(queries), self.generator)
        with torch.no_grad():
            self.stm = self._write(fresh, queries, answers) if self.write_memory else fresh

    def _write(self, stm: torch.Tensor, queries: PaddedIds, answers: PaddedIds) -> torch.Tensor:
        """Writes each turn as the model writes the turns it answers (its ``interaction_write``).

        Answers arrive in the env's ``[A] a [EOS]`` format; the opening ``[A]`` is the format's, not a generated
        id. A reference answer (teacher forcing) is written the same in either form."""
        generated = [row[1:] if row[:1] == [ANSWER_ID] else row for row in answers.to_lists()]
        return self.model.write_memory(stm, *self.model.encode_interactions(queries.to_lists(), generated))

    def _require_memory(self) -> None:
        if self.stm is None:
            raise RuntimeError("call begin_episode() or begin_batch() first")


def run_episode(env: MrlEnv | gym.Env, agent: Agent, *, seed: int | None = None,
                options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Plays one episode of a single env (an :class:`MrlEnv` or a wrapped one from ``gymnasium.make``);
    returns the step infos (each with its ``reward``).

    Text mode uses the agent's text form. Token mode uses its batched (id) form with a batch of one, so
    the ids the agent generates are the ids scored and written (decoding and re-encoding is not lossless
    for arbitrary generated ids).
    """
    observation, info = env.reset(seed=seed, options=options)
    episode = info["episode"]
    if env.unwrapped.mode == "token":  # a gymnasium.make result is wrapped: settings live on the MrlEnv
        return _run_token_episode(env, agent, observation, info)
    agent.begin_episode(episode.query, episode.answer, episode)
    infos, query = [], observation["query"]
    while True:
        answer = agent.answer(query)
        observation, reward, terminated, _, info = env.step(answer)
        infos.append({**info, "reward": reward})
        if terminated:
            return infos
        agent.remember(query, info["write_to_memory"])
        query = observation["query"]


def _run_token_episode(env: MrlEnv, agent: Agent, observation: dict[str, Any],
                       info: dict[str, Any]) -> list[dict[str, Any]]:
    from rxmrl.envs.batched import BatchReset

    one = lambda ids: PaddedIds.from_lists([ids.tolist()])  # noqa: E731
    saved_query, saved_answer = one(observation["saved_query"]), one(observation["saved_answer"])
    start = BatchReset(saved_query, saved_answer, concat_padded(saved_query, saved_answer), one(observation["query"]),
                       [info["episode"]], torch.tensor([info["long_range"]]), [info["modes"]],
                       [info["episode_index"]])
    agent.begin_batch(start)
    infos, query = [], start.query
    while True:
        answers = agent.answer_batch(query)
        observation, reward, terminated, _, info = env.step(np.asarray(answers.to_lists()[0], np.int64))
        infos.append({**info, "reward": reward})
        if terminated:
            return infos
        agent.remember_batch(query, PaddedIds.from_lists([list(info["write_to_memory_ids"])]))
        query = one(observation["query"])
