"""Batched MRL rollouts: B episodes stepped together, everything the update needs recorded.

The episodes are played in a :class:`rxmrl.envs.BatchedMrlEnv` (its native batched form): the env holds the
tokenised episodes, the step plan (which saved data, which reward mode), the running mean and teacher
forcing, and scores every step in one batched reward call on ids; this module drives it with the policy and
records what the update needs, every choice read from a :class:`~rxmrl.training.mrl.plan.RolloutPlan` (one
per algorithm; the steps are named phases: write, answer, reference, score, value). Per episode (row ``b``), with interaction 0 = the saved first interaction and
interaction ``k`` = follow-up ``k-1`` as written into memory::

    start = env.reset(options={"episodes": episodes})      # the curriculum's choice, in its order
    STM_0  = noise (or, with probability random_reset_ratio, the row's STM from the previous rollout)
    for step t = 0 .. N-1:
        STM_t^pre  = STM                                    # recorded ("STM before")
        STM        = MemAttn(STM, Encoder(interaction t))   # recorded ("STM after"); reference: same ids
        answer_t   ~ pi_theta(. | query_t, STM)             # batched, KV + memory caches
        log pi_old(answer_t), log pi_ref(answer_t | query_t, STM_ref)   # same processed distribution
        out        = env.step([A] answer_t [EOS])           # r_t = reward(answer_t, reference_t, saved data)
        V_t        = critic(saved data out.saved_index + query_t [, STM])
        interaction t+1 = out.written_interaction           # (query_t, answer_t), or reference_t under TF

With ``plan.group_size = G > 1`` (the group estimators) each step samples G answers per episode from the
identical STM and query, the env scores all of them (``score_alternatives``), and the episode goes on with
one drawn uniformly at random -- from the sampling generator, never from the rewards -- so the memory
trajectory stays the policy's own and unbiased::

        answers_{t,b,1..G} ~ pi_theta(. | query_t, STM)     # STM_t^pre, STM shared by the group
        r_{t,b,g}           = reward(answer_{t,b,g}, ...)    # the same point of the conversation
        c_b ~ U{1..G};  out = env.step(answer_{t,b,c_b})     # interaction t+1 = (query_t, answer_{t,b,c_b})

Samples are then ``(t·B + b)·G + g``; no critic is needed (``critic=None``: values 0).

DMPO's candidates (``plan.reference_member="none"``, ``continue_with="best"``) add the step's reference answer as
member ``G`` of every group (K = G + 1 members), and the episode goes on with the member of the highest
reward -- the accepted answer -- so memory takes the accepted answer and never a rejected one::

        answers_{t,b,G} = reference_t                       # scored like a sample; old log-probs 0 (not sampled)
        c_b = argmax_k r_{t,b,k}                            # ties: the last of them (stable order)

A group estimator's reference member (``plan.reference_member="policy"``) adds the reference answer the same way (member ``G``, scored like a
sample) but keeps the random continuation among the sampled members, and records the policy's own log-probs
of the reference tokens as their behaviour log-probs, so the PPO ratio starts at 1 for them too::

        answers_{t,b,G} = reference_t;  log pi_old(answers_{t,b,G}) = log pi_theta(reference_t | query_t, STM)
        c_b ~ U{the G sampled members}

The write of interaction ``t`` happens before answer ``t`` (so the last interaction is never written: no
write after the last step). The frozen reference policy has its own STM, reset (or kept) with the policy's
and written with the same ids. Interactions are ``[BOS][Q] q [A] a [EOS]`` -- what
:func:`rxmrl.model.interaction_ids` builds, the update's format too, so ``[A]`` is never doubled -- cut to
``max_interaction_len`` for the memory encoder (the env scores against the full interaction).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from rxmrl.data import Episode
from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.envs.episodes import cut_to_steps
from rxmrl.envs.padded import PaddedIds
from rxmrl.model import ReactiveTransformer, pad_batch, query_tokens
from rxmrl.rewards import WordStatistics
from rxmrl.special_tokens import ANSWER_ID, EOS_ID, PAD_ID
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.mrl.config import StageConfig
from rxmrl.training.mrl.objective import LOG_PROB_FLOOR
from rxmrl.training.mrl.plan import RolloutPlan


# -------------------------------------------------------------------------------- stage episodes
def stage_episodes(episodes: Sequence[Episode], long_range: Sequence[bool], steps: int) -> list[Episode]:
    """Episodes cut to a stage's ``steps`` (:func:`rxmrl.envs.episodes.cut_to_steps`) and tagged with the
    trainer's strategy, ready for ``BatchedMrlEnv.reset(options={"episodes": ...})`` (which reads each
    episode's ``strategy``)."""
    pairs = enumerate(zip(episodes, long_range, strict=True))
    return [replace(cut_to_steps(e, steps, lr, f"episode {i} of the batch"),
                    strategy="long_range" if lr else "cumulative") for i, (e, lr) in pairs]


# ------------------------------------------------------------------------------------ the rollout
@dataclass
class Rollout:
    """M = N·B·G samples in step-major order (sample ``(t·B + b)·G + g`` is answer ``g`` of step ``t`` of
    episode ``b``; G = ``group_size``, 1 without groups).

    Answers ``[M, T]`` exclude ``[A]`` and end with ``[EOS]`` (``mask`` True on generated tokens).
    """

    queries: list[list[int]]  # M query id lists ([BOS][Q] q)
    answers: Tensor  # [M, T]
    mask: Tensor  # [M, T] bool
    old_log_probs: Tensor  # [M, T] behaviour policy, processed sampling distribution
    ref_log_probs: Tensor  # [M, T] frozen reference policy, same distribution, its own STM
    write_ids: Tensor  # [M, W] interaction written just before answering (right-padded)
    write_mask: Tensor  # [M, W]
    encoded: Tensor | None  # [M, L, W, D] the encoder's output for that write (kept with keep_encoded=True)
    stm_prev: Tensor  # [M, L, S, D] STM before that write
    stm_read: Tensor  # [M, L, S, D] STM after it: what the answer was generated from
    critic_ids: Tensor | None  # [M, C] saved data of the step + the query (None: no critic)
    critic_mask: Tensor | None  # [M, C]
    rewards: Tensor  # [M]
    values: Tensor  # [M] critic's estimate at collection time
    steps: Tensor  # [M] step index t
    components: dict[str, Tensor]  # name -> [M]
    num_episodes: int
    num_steps: int
    group_size: int = 1  # answers per (episode, step) from one STM (sampled, plus DMPO's reference answer)
    final_stm: Tensor | None = None  # [B, L, S, D] policy STM at the end (for random resets)
    final_ref_stm: Tensor | None = None
    advantages: Tensor | None = None  # [M], filled by compute_advantages
    returns: Tensor | None = None  # [M]
    timings: dict[str, float] = field(default_factory=dict)  # seconds: generate / reference / critic / memory / reward
    scored_by: dict[str, Tensor] = field(default_factory=dict)  # name -> [M] rewards of collect_rollout's scorers
    # [M, T] the reference policy's log-probs from a memory never written (with_blank_reference: DMPO's credit)
    ref_blank_log_probs: Tensor | None = None

    @property
    def size(self) -> int:
        return self.rewards.shape[0]

    def stm_change(self) -> Tensor:
        """``MSE(STM_t, STM_{t-1})`` per step ``[N]`` (what the memory regulariser penalises)."""
        per_sample = (self.stm_read - self.stm_prev).pow(2).flatten(1).mean(1)
        return per_sample.view(self.num_steps, -1).mean(1)


def initial_memory(model: ReactiveTransformer, batch: int, keep_ratio: float, carried: Tensor | None,
                   carried_ref: Tensor | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Fresh STM per row; with probability ``keep_ratio`` a row keeps its STM from the previous rollout.

    The reference policy starts from the same noise (and keeps its own carried STM on the same rows).
    """
    stm = model.initial_stm(batch, generator).clone()
    ref = stm.clone()
    if keep_ratio > 0 and carried is not None and carried_ref is not None:
        rows = min(batch, carried.shape[0])
        keep = torch.rand(rows, generator=generator, device=stm.device) < keep_ratio
        stm[:rows][keep] = carried[:rows][keep].to(stm)
        ref[:rows][keep] = carried_ref[:rows][keep].to(ref)
    return stm, ref


def critic_inputs(saved: Sequence[list[int]], queries: Sequence[list[int]], max_len: int) -> list[list[int]]:
    """Saved interaction + current query, cutting the interaction (never the query) to fit ``max_len``."""
    out = []
    for interaction, query in zip(saved, queries, strict=True):
        query = query_tokens(query)[-max_len:]
        out.append(interaction[: max_len - len(query)] + query)
    return out


def rollout_env(episodes: Sequence[Episode], steps: int, reward: Callable[..., Any], tokenizer: RxTokenizer, *,
                device: torch.device | str = "cpu", max_answer_tokens: int = 48, saved_data: str = "conversation",
                word_statistics: WordStatistics | None = None) -> BatchedMrlEnv:
    """The batched env a trainer rolls out in: ``reward`` (a callable, e.g. ``build_reward``'s), episodes
    given at every reset. ``episodes`` (already :func:`stage_episodes`) only seed its sampler's pools; answers
    reach it as ``[A] a [EOS]`` rows, hence two tokens more than the policy generates. ``saved_data`` and
    ``word_statistics`` as in :class:`rxmrl.envs.MrlEnv`."""
    return BatchedMrlEnv(max(1, len(episodes)), steps=steps, episodes=list(episodes), reward=reward,
                         tokenizer=tokenizer, device=device, max_answer_tokens=max_answer_tokens + 2,
                         saved_data=saved_data, word_statistics=word_statistics)


def stage_word_statistics(reward, source: str, stage: StageConfig) -> WordStatistics | None:
    """The memory tokens' word statistics of a stage's data (train split), for a reward that uses them."""
    if not getattr(reward, "uses_memory_targets", False):
        return None
    from rxmrl.envs.scoring import curriculum_word_statistics

    return curriculum_word_statistics(source, f"steps-{stage.data_steps or stage.steps}")


def answer_rows(tokens: Tensor, mask: Tensor, write: str = "closed") -> PaddedIds:
    """Generated answers (``[B, T]``, no ``[A]``, ``[PAD]`` after ``[EOS]``) as the env's ``[A] a [EOS]`` rows.

    Under ``write="closed"`` (the policy's ``interaction_write``) a row cut by the length limit gets the
    closing ``[EOS]`` here, exactly as :func:`rxmrl.model.interaction_ids` closes it, so env's written
    interaction = ``query + [A] a [EOS]``; under ``"as-generated"`` it stays as generated.
    """
    batch, width = tokens.shape
    lengths = mask.sum(1)  # [B] generated tokens, [EOS] included when generated
    last = tokens.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # [B]
    kept = (lengths > 0) & (last == EOS_ID) | (write == "as-generated")  # [B] rows that get no closing [EOS]
    ids = torch.full((batch, width + 2), PAD_ID, dtype=torch.long, device=tokens.device)  # [B, 1 + T + 1]
    ids[:, 0] = ANSWER_ID
    ids[:, 1:width + 1] = tokens.masked_fill(~mask, PAD_ID)
    closing = torch.where(kept, PAD_ID, EOS_ID).unsqueeze(1)  # [B, 1]
    ids.scatter_(1, (lengths + 1).unsqueeze(1), closing)
    return PaddedIds(ids, lengths + 1 + (~kept).long()).trimmed()


def truncate_interactions(interactions: PaddedIds, max_len: int) -> PaddedIds:
    """Rows cut to ``max_len`` keeping a final ``[EOS]`` (as :func:`rxmrl.model.interaction_ids` cuts them):
    the memory encoder never reads more than ``max_len`` tokens of one interaction."""
    if interactions.ids.shape[1] <= max_len:
        return interactions
    ids = interactions.ids[:, :max_len].clone()  # [B, max_len]
    ids[interactions.lengths > max_len, max_len - 1] = EOS_ID
    return PaddedIds(ids, interactions.lengths.clamp(max=max_len))


@torch.no_grad()
def collect_rollout(policy: ReactiveTransformer, env: BatchedMrlEnv, episodes: Sequence[Episode], plan: RolloutPlan,
                    *, reference: ReactiveTransformer | None = None, critic=None,
                    carried: tuple[Tensor, Tensor] | None = None, generator: torch.Generator | None = None,
                    scorers: Mapping[str, BatchedMrlEnv] | None = None) -> Rollout:
    """Play ``episodes`` (see :func:`stage_episodes`) in ``env`` with ``policy`` as ``plan`` says (see the
    module docstring): per step the named phases write, answer, reference, score and value.

    The env scores each step (one batched reward call on ids: its plan, saved data, running mean and
    teacher forcing); the phases own the model side: memory writes, generation, reference log-probs and
    values. ``reference``: the frozen policy whose log-probs the KL terms and DMPO read (None: the behaviour
    log-probs stand in). ``critic``: values of each step (None: 0). ``carried``: the previous rollout's final
    ``(STM, reference STM)`` for ``plan.random_reset_ratio``. ``scorers`` (evaluation, one answer per step):
    more envs of the same steps, each with its own reward, reset with the same episodes and stepped with the
    same answers; their rewards land in ``rollout.scored_by[name]``.
    """
    play = _Play(policy, env, plan, reference, critic, generator, dict(scorers or {}))
    play.reset(episodes, carried)
    for t in range(env.steps):
        play.step(t)
    return _stack(play.per_step, play.size, play.stm, play.ref_stm, play.timings, plan.members)


@dataclass
class _Play:
    """One rollout in progress: the models, the plan, the STMs and what the steps recorded so far."""

    policy: ReactiveTransformer
    env: BatchedMrlEnv
    plan: RolloutPlan
    reference: ReactiveTransformer | None
    critic: Any
    generator: torch.Generator | None
    scorers: dict[str, BatchedMrlEnv]
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("memory", "generate", "reference", "critic", "reward"), 0.0))  # seconds per phase
    per_step: list[dict] = field(default_factory=list)

    @contextmanager
    def timed(self, phase: str):
        clock = time.perf_counter()
        yield
        self.timings[phase] += time.perf_counter() - clock

    def reset(self, episodes: Sequence[Episode], carried: tuple[Tensor, Tensor] | None) -> None:
        """Reset the env (and the scorers) to ``episodes``; fresh (or carried) STMs; interaction 0 as written."""
        plan = self.plan
        if self.scorers and plan.members != 1:
            raise ValueError(f"scorers score one answer per step; group_size={plan.group_size}")
        options = {"episodes": list(episodes), "teacher_forcing": plan.teacher_forcing}
        start = self.env.reset(options=options)
        for other in self.scorers.values():
            other.reset(options=options)
        self.size = len(start.episodes)
        self.stm, self.ref_stm = initial_memory(self.policy, self.size, plan.random_reset_ratio,
                                                *(carried or (None, None)), self.generator)
        if plan.blank_reference and self.reference is None:
            raise ValueError("blank_reference needs the reference policy")
        self.blank = self.reference.initial_stm(self.size, self.generator) if plan.blank_reference else None
        self.written = [truncate_interactions(start.saved_interaction, plan.max_interaction_len)]  # interaction k
        self.written_rows = [self.written[0].to_lists()]
        self.query = start.query

    def step(self, t: int) -> None:
        """Step ``t``: the phases in order, then the step's record."""
        ids, mask, stm_prev, encoded = self.write(t)
        queries, tokens, token_mask, old = self.answer()
        ref, blank = self.reference_scores(queries, tokens, token_mask, old)
        answers = answer_rows(tokens, token_mask, self.policy.config.interaction_write)  # [B·K] rows
        scored, result, scored_by = self.score(answers)
        critic_ids, critic_mask, values = self.value(result, len(queries))
        self.written.append(truncate_interactions(result.written_interaction, self.plan.max_interaction_len))
        self.written_rows.append(self.written[-1].to_lists())
        self.query = result.next_query
        components = {k: v.float().cpu() for k, v in scored.components.items()}
        components["fact_recall"] = scored.fact_recall.float().cpu()  # NaN where the data has no facts
        components["held_fact_recall"] = scored.held_fact_recall.float().cpu()  # NaN: memory holds none
        group = _Repeat(self.plan.members)
        self.per_step.append(dict(
            queries=queries, tokens=tokens, mask=token_mask, old=old, ref=ref, blank=blank, write_ids=group(ids),
            write_mask=group(mask), encoded=group(encoded) if self.plan.keep_encoded and encoded is not None else None,
            stm_prev=group(stm_prev), stm_read=group(self.stm), critic_ids=critic_ids, critic_mask=critic_mask,
            rewards=scored.rewards.float().cpu(), values=values.float().cpu(), components=components,
            scored_by=scored_by))

    def write(self, t: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Write interaction ``t`` into both STMs: ``(ids, mask, STM before, encoded data)``."""
        with self.timed("memory"):
            device = self.policy.device
            ids, mask = self.written[t].ids.to(device), self.written[t].mask().to(device)  # [B, W]
            stm_prev, encoded = self.stm, None
            if self.plan.write_memory:
                encoded, _ = self.policy.encoder(ids, mask)  # [B, L, W, D]; write_memory's two halves, ED kept
                self.stm = self.policy.memory_attention(self.stm, encoded, mask)
            if self.reference is not None and self.plan.write_memory:
                self.ref_stm = self.reference.write_memory(self.ref_stm, ids, mask)
        return ids, mask, stm_prev, encoded

    def answer(self) -> tuple[list[list[int]], Tensor, Tensor, Tensor]:
        """G sampled answers per episode from its one STM (plus the reference member): ``(queries [B·K],
        tokens [B·K, T], mask, behaviour log-probs)``."""
        plan, group_size = self.plan, self.plan.group_size
        with self.timed("generate"):
            queries = [q for q in self.query.to_lists() for _ in range(group_size)]  # [B·G], a group per episode
            out = self.policy.generate(queries, _Repeat(group_size)(self.stm), plan.max_answer_tokens,
                                       plan.sampling, generator=self.generator)
            tokens, mask, old = out.tokens, out.mask, out.log_probs
            if plan.with_reference:
                tokens, mask, old = self.reference_member(tokens, mask, old)
                queries = [q for q in self.query.to_lists() for _ in range(plan.members)]
        return queries, tokens, mask, old

    def reference_member(self, tokens: Tensor, mask: Tensor, old: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The step's reference answer as member G of every group; its behaviour log-probs 0 (``"none"``) or
        the policy's own under ``sampling``, floored (``"policy"``)."""
        plan, device = self.plan, self.policy.device
        ref_tokens, ref_mask = answer_tokens(self.env.current_references(), plan.max_answer_tokens)
        ref_tokens, ref_mask = ref_tokens.to(device), ref_mask.to(device)
        if plan.reference_member == "policy":
            ref_old = self.policy.score(self.query.to_lists(), ref_tokens, self.stm, answer_mask=ref_mask,
                                        sampling=plan.sampling, with_logits=False).log_probs
            ref_old = ref_old.clamp_min(LOG_PROB_FLOOR).masked_fill(~ref_mask, 0.0)
        else:
            ref_old = torch.zeros(ref_tokens.shape, device=device)
        return tuple(append_member(a, b, plan.group_size, pad) for a, b, pad in
                     ((tokens, ref_tokens, 0), (mask, ref_mask, False), (old, ref_old, 0.0)))

    def reference_scores(self, queries: list[list[int]], tokens: Tensor, mask: Tensor,
                         old: Tensor) -> tuple[Tensor, Tensor | None]:
        """The reference policy's log-probs of every answer from its own STM (and from a blank one)."""
        group, sampling = _Repeat(self.plan.members), self.plan.score_sampling
        with self.timed("reference"):
            ref = old.clone() if self.reference is None else self.reference.score(
                queries, tokens, group(self.ref_stm), answer_mask=mask, sampling=sampling, with_logits=False).log_probs
            blank = None if self.blank is None else self.reference.score(
                queries, tokens, group(self.blank), answer_mask=mask, sampling=sampling, with_logits=False).log_probs
        return ref, blank

    def score(self, answers: PaddedIds):
        """The env scores the step: ``(scored, stepped, scored_by)``. One answer per step is stepped as it is;
        a group is scored whole, then the episode goes on with the member ``continue_with`` picks."""
        plan = self.plan
        with self.timed("reward"):
            if plan.members == 1:
                scored = self.env.step(answers)
                return scored, scored, {name: other.step(answers).rewards.float().cpu()
                                        for name, other in self.scorers.items()}
            scored = self.env.score_alternatives(answers, group_size=plan.members)
            rows = self.continuing_rows(scored.rewards).to(answers.ids.device)
            stepped = self.env.step(PaddedIds(answers.ids[rows], answers.lengths[rows]).trimmed())
        return scored, stepped, {}

    def continuing_rows(self, rewards: Tensor) -> Tensor:
        """``[B]`` rows of the answers the episodes go on with: a sampled member drawn without looking at the
        rewards (the reference one, if any, comes last), or DMPO's accepted one."""
        members, group_size = self.plan.members, self.plan.group_size
        if self.plan.continue_with == "best":
            return best_members(rewards, members)
        sampled = continuing_members(self.size, group_size, self.generator)
        return (sampled // group_size) * members + sampled % group_size

    def value(self, stepped, samples: int) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """``(critic ids, mask, values)`` of the step's ``samples``: the value reads the saved data the step
        is about (not the answer) and the query, [+ STM]; no critic: values 0."""
        device = self.policy.device
        with self.timed("critic"):
            if self.critic is None:
                return None, None, torch.zeros(samples, device=device)
            saved_rows = [self.written_rows[k][b] for b, k in enumerate(stepped.saved_index.tolist())]
            ids, mask = pad_batch(critic_inputs(saved_rows, self.query.to_lists(), self.plan.critic_max_len),
                                  device=device)
            values = self.critic(ids, mask, self.stm)
            group = _Repeat(self.plan.members)
        return group(ids), group(mask), group(values)


def continuing_members(episodes: int, group_size: int, generator: torch.Generator | None) -> Tensor:
    """``[B]`` rows ``b·G + c_b`` of the answers each episode goes on with: ``c_b`` uniform in ``0..G-1`` from
    the sampling generator, drawn before and apart from any reward."""
    device = generator.device if generator is not None else None
    choice = torch.randint(group_size, (episodes,), generator=generator, device=device)
    return torch.arange(episodes, device=choice.device) * group_size + choice


def member_order(rewards: Tensor, members: int) -> Tensor:
    """``[B, K]`` each group's members from the lowest reward to the highest (a stable sort: of tied members
    the later one ranks higher), for rewards ``[B·K]`` in groups of ``K`` consecutive rows."""
    return rewards.float().view(-1, members).argsort(dim=1, stable=True)


def best_members(rewards: Tensor, members: int) -> Tensor:
    """``[B]`` rows ``b·K + k`` of each group's highest-reward member (:func:`member_order`'s last)."""
    best = member_order(rewards, members)[:, -1]
    return torch.arange(best.shape[0], device=best.device) * members + best


def answer_tokens(rows: PaddedIds, max_tokens: int) -> tuple[Tensor, Tensor]:
    """``[A] a [EOS]`` rows as generated answers ``(tokens [B, T], mask [B, T])`` (what
    :func:`answer_rows` inverts), cut to ``max_tokens`` keeping a final ``[EOS]`` as generation would stop."""
    lengths = (rows.lengths - 1).clamp(min=0, max=max_tokens)  # without [A]
    width = max(1, int(lengths.max()))
    tokens = rows.ids[:, 1:width + 1].clone()
    tokens = torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]), value=PAD_ID)
    mask = torch.arange(width, device=tokens.device)[None, :] < lengths[:, None]
    cut = (rows.lengths - 1) > max_tokens
    if bool(cut.any()):  # then width == max_tokens
        tokens[cut, max_tokens - 1] = EOS_ID
    return tokens.masked_fill(~mask, PAD_ID), mask


def append_member(samples: Tensor, extra: Tensor, group_size: int, pad) -> Tensor:
    """``[B·G, T, ...]`` groups and ``[B, T', ...]`` one more member each -> ``[B·(G+1), max(T, T'), ...]``,
    the extra one last in its group."""
    both = _pad_cat([samples, extra], pad)  # one width
    grouped = both[:samples.shape[0]].view(-1, group_size, *both.shape[1:])
    return torch.cat([grouped, both[samples.shape[0]:].unsqueeze(1)], 1).flatten(0, 1)


class _Repeat:
    """Each episode's row ``G`` times in a row (``[B, ...] -> [B·G, ...]``): what a group shares."""

    def __init__(self, group_size: int) -> None:
        self.group_size = group_size

    def __call__(self, tensor: Tensor) -> Tensor:
        return tensor if self.group_size == 1 else tensor.repeat_interleave(self.group_size, 0)


def _pad_cat(tensors: list[Tensor], value, dim: int = 1) -> Tensor:
    """Concatenate ``[B_i, ..., T_i, ...]`` tensors along dim 0, right-padding dim ``dim`` to the longest."""
    width = max(t.shape[dim] for t in tensors)
    after = [0, 0] * (tensors[0].dim() - dim - 1)  # F.pad lists pads from the last dim backwards
    return torch.cat([torch.nn.functional.pad(t, (*after, 0, width - t.shape[dim]), value=value) for t in tensors])


def _stack(per_step: list[dict], size: int, stm: Tensor, ref_stm: Tensor, timings, group_size: int = 1) -> Rollout:
    names = per_step[0]["components"].keys()
    has_critic = per_step[0]["critic_ids"] is not None
    return Rollout(
        queries=[q for s in per_step for q in s["queries"]],
        answers=_pad_cat([s["tokens"] for s in per_step], 0),
        mask=_pad_cat([s["mask"] for s in per_step], False),
        old_log_probs=_pad_cat([s["old"] for s in per_step], 0.0),
        ref_log_probs=_pad_cat([s["ref"] for s in per_step], 0.0),
        ref_blank_log_probs=(None if per_step[0]["blank"] is None
                             else _pad_cat([s["blank"] for s in per_step], 0.0)),
        write_ids=_pad_cat([s["write_ids"] for s in per_step], 0),
        write_mask=_pad_cat([s["write_mask"] for s in per_step], False),
        encoded=(None if per_step[0]["encoded"] is None
                 else _pad_cat([s["encoded"] for s in per_step], 0.0, dim=2)),
        stm_prev=torch.cat([s["stm_prev"] for s in per_step]),
        stm_read=torch.cat([s["stm_read"] for s in per_step]),
        critic_ids=_pad_cat([s["critic_ids"] for s in per_step], 0) if has_critic else None,
        critic_mask=_pad_cat([s["critic_mask"] for s in per_step], False) if has_critic else None,
        rewards=torch.cat([s["rewards"] for s in per_step]),
        values=torch.cat([s["values"] for s in per_step]),
        steps=torch.arange(len(per_step)).repeat_interleave(size * group_size),
        components={k: torch.cat([s["components"][k] for s in per_step]) for k in names},
        scored_by={k: torch.cat([s["scored_by"][k] for s in per_step]) for k in per_step[0]["scored_by"]},
        num_episodes=size, num_steps=len(per_step), group_size=group_size, final_stm=stm, final_ref_stm=ref_stm,
        timings=timings,
    )
