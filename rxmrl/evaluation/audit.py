"""The reward audit: how much a reward measures memory, from answers whose memory content is known.

Every case of :mod:`rxmrl.evaluation.audit_cases` plays the same validation episodes, in the same order, and
each reward scores the same answers (a case is played once; further rewards rescore its recorded answers).
Episodes pair up across cases, so each comparison is a paired one over episodes ``n`` with per-episode mean
rewards ``r^case_n``::

    gap(A, B)       = mean_n (r^A_n − r^B_n)           with a percentile bootstrap interval over episodes
    win_rate(A, B)  = mean_n [r^A_n > r^B_n]            (ties count half)

The checks a reward that measures retention must pass:

    oracle − wrong_fact     the remembered part decides the score: large, win rate near 1
    oracle − history_dump   dumping the conversation is not an answer: large
    constant ≤ other_episode   saying the same thing at every step earns nothing for consistency
    model − model_reset     memory sensitivity: what the reward pays for the model's memory
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rxmrl.envs.agents import Agent
from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.evaluation.audit_cases import RecordedAnswers
from rxmrl.evaluation.reward_range import EvaluationResult, Stat, evaluate
from rxmrl.model.sampling import SamplingConfig

CHECKS: tuple[tuple[str, str], ...] = (("oracle", "wrong_fact"), ("oracle", "history_dump"),
                                       ("other_episode", "constant"))


def win_rate(a: np.ndarray, b: np.ndarray) -> float:
    """Share of paired episodes where ``a`` scores above ``b`` (ties count half)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.mean((a > b) + 0.5 * (a == b)))


@dataclass
class RewardAudit:
    """Every case's evaluation under one reward, and the paired comparisons between them."""

    reward: str
    results: dict[str, EvaluationResult]
    memory_pairs: list[tuple[str, str]] = field(default_factory=list)  # (model, model with reset memory)

    def gap(self, a: str, b: str, level: float = 0.95) -> Stat:
        return Stat.of(self.results[a].episode_rewards - self.results[b].episode_rewards, level)

    def win_rate(self, a: str, b: str) -> float:
        return win_rate(self.results[a].episode_rewards, self.results[b].episode_rewards)

    def comparisons(self) -> list[tuple[str, str]]:
        checks = [(a, b) for a, b in CHECKS if a in self.results and b in self.results]
        return checks + list(self.memory_pairs)

    def summary(self, level: float = 0.95) -> dict[str, Any]:
        cases = {}
        for name, result in self.results.items():
            cases[name] = {"reward": result.reward(level).as_dict(), "fact_recall": result.recall(level).as_dict(),
                           "memory_recall": (result.component_mean("memory_recall")
                                             if "memory_recall" in result.components else None),
                           "episode_rewards": result.episode_rewards.tolist()}
        gaps = {f"{a} - {b}": {**self.gap(a, b, level).as_dict(), "win_rate": self.win_rate(a, b)}
                for a, b in self.comparisons()}
        return {"reward": self.reward, "cases": cases, "gaps": gaps}


@dataclass
class Audit:
    """The audits of several rewards on the same answers."""

    rewards: dict[str, RewardAudit]
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self, level: float = 0.95) -> dict[str, Any]:
        return {**self.meta, "rewards": {name: a.summary(level) for name, a in self.rewards.items()}}

    def format_table(self, level: float = 0.95) -> str:
        """Mean reward [CI] per case (rows) and reward (columns), then each reward's paired gaps."""
        names = list(self.rewards)
        cases = list(next(iter(self.rewards.values())).results)
        width = max(len(c) for c in cases) + 2
        meta = " · ".join(f"{k} {v}" for k, v in self.meta.items())
        lines = [f"reward audit · {meta}", f"{'case':<{width}}" + "".join(f"{n:>24}" for n in names)]
        for case in cases:
            cells = []
            for name in names:
                r = self.rewards[name].results[case].reward(level)
                cells.append(f"{r.mean:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
            lines.append(f"{case:<{width}}" + "".join(f"{c:>24}" for c in cells))
        lines.append("")
        lines.append(f"paired gaps over episodes ({level:.0%} bootstrap CI) and win rates:")
        for name in names:
            audit = self.rewards[name]
            for a, b in audit.comparisons():
                g = audit.gap(a, b, level)
                lines.append(f"  {name:<18} {a + ' - ' + b:<44} {g.mean:+.2f} [{g.ci_low:+.2f}, {g.ci_high:+.2f}]"
                             f"  win rate {audit.win_rate(a, b):.3f}")
        return "\n".join(lines)


def run_audit(rewards: Mapping[str, BatchedMrlEnv], cases: Mapping[str, Agent], num_episodes: int | None = None, *,
              memory_pairs: list[tuple[str, str]] = (), seed: int = 0,
              meta: Mapping[str, Any] | None = None, progress: Callable[[str], None] | None = None) -> Audit:
    """Plays every case once in the first reward's env and rescores its answers in the others.

    ``rewards`` maps a reward's name to a :class:`BatchedMrlEnv` that scores with it; the envs must hold the
    same episodes in the same order (``order="sequential"``, same source, config and split).
    ``memory_pairs`` names (model, model with reset memory) case pairs whose gap is the memory sensitivity.
    """
    if not rewards or not cases:
        raise ValueError("the audit needs at least one reward and one case")
    results: dict[str, dict[str, EvaluationResult]] = {name: {} for name in rewards}
    for case, agent in cases.items():
        recorded = RecordedAnswers(agent)
        for i, (name, env) in enumerate(rewards.items()):
            player = recorded if i == 0 else recorded.replay()
            result = evaluate(player, env, num_episodes, seed=seed)
            result.agent = case
            results[name][case] = result
        if progress is not None:
            progress(case)
    audits = {name: RewardAudit(name, per_case, list(memory_pairs)) for name, per_case in results.items()}
    return Audit(audits, dict(meta or {}))


# ------------------------------------------------------------------------------------ from settings
@dataclass
class AuditSettings:
    """What ``rxmrl reward audit`` and the pipeline's audit phase run."""

    presets: list[str] = field(default_factory=lambda: ["default", "memory", "rxlm", "rxnn-len"])
    callables: list[str] = field(default_factory=list)  # rewards by import path, "module:name"
    similarity: str = "encoder"  # encoder | random-embedding | policy-embedding (the first checkpoint's)
    saved_data: str = "conversation"  # conversation | as_written
    source: str = "embedded"
    config: str = "steps-8"
    split: str = "validation"
    num_episodes: int | None = 64
    data_seed: int = 0  # the embedded generator's seed (the pipeline's evaluation uses the warm start's)
    batch_size: int = 32
    checkpoints: dict[str, str] = field(default_factory=dict)  # label -> model dir: model vs reset memory
    cases: list[str] | None = None  # default: every scripted case
    max_new_tokens: int = 48
    seed: int = 0
    device: str = "cpu"
    sampling: SamplingConfig | None = None  # how the checkpoints answer (None: greedy)


def load_reward_callable(spec: str, tokenizer) -> Callable[..., Any]:
    """``module:name`` -> a reward callable; a factory with a ``tokenizer`` parameter is called with it."""
    import importlib
    import inspect

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"reward callable {spec!r}: expected 'module:name'")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"reward callable {spec!r} cannot be imported: {error}") from None
    if not callable(target):
        raise ValueError(f"reward callable {spec!r} is a {type(target).__name__}, not callable")
    try:
        takes_tokenizer = "tokenizer" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        takes_tokenizer = False
    return target(tokenizer=tokenizer) if takes_tokenizer else target


def audit_rewards(settings: AuditSettings, tokenizer=None, progress: Callable[[str], None] | None = None) -> Audit:
    """Builds the envs (one per reward, same episodes) and the cases of ``settings``, and runs the audit."""
    from rxmrl.envs.agents import OracleAgent, RxTAgent
    from rxmrl.envs.scoring import build_reward, similarity_backend
    from rxmrl.evaluation import audit_cases as cases_module
    from rxmrl.evaluation.agents import load_agent, load_tokenizer_for
    from rxmrl.model.sampling import GREEDY, describe_sampling
    from rxmrl.rewards import RewardConfig, check_preset, episode_memory_targets

    for preset in settings.presets:
        check_preset(preset, "--preset")
    wanted = list(settings.cases or cases_module.SCRIPTED_CASES)
    bad = [c for c in wanted if c not in cases_module.SCRIPTED_CASES]
    if bad:
        raise ValueError(f"unknown audit case(s) {bad}: expected some of {list(cases_module.SCRIPTED_CASES)}")
    first_checkpoint = next(iter(settings.checkpoints.values()), None)
    tokenizer = tokenizer or load_tokenizer_for(first_checkpoint)
    models = {label: load_agent(path, tokenizer=tokenizer, seed=settings.seed, device=settings.device,
                                max_new_tokens=settings.max_new_tokens, sampling=settings.sampling)
              for label, path in settings.checkpoints.items()}
    if settings.similarity == "policy-embedding" and not models:
        raise ValueError("similarity 'policy-embedding' needs a --checkpoint (its token embeddings score)")
    first_model = next(iter(models.values()), None)

    def env(reward) -> BatchedMrlEnv:
        return BatchedMrlEnv(settings.batch_size, settings.source, None, settings.split, config=settings.config,
                             num_episodes=settings.num_episodes, data_seed=settings.data_seed, reward=reward,
                             tokenizer=tokenizer, order="sequential", seed=settings.seed,
                             saved_data=settings.saved_data)

    # one backend for every preset, memoising answers too: each case's answers are rescored under every reward
    backend = similarity_backend(settings.similarity, tokenizer, policy=first_model, cache_all=True)
    rewards = {p: build_reward(p, backend, tokenizer) for p in settings.presets}
    rewards.update({spec: load_reward_callable(spec, tokenizer) for spec in settings.callables})
    envs = {name: env(reward) for name, reward in rewards.items()}
    first = next(iter(envs.values()))
    statistics = first.statistics.get()
    for other in envs.values():  # every reward sees the same memory tokens
        other.statistics = first.statistics
    episodes = [e for pool in first.sampler.pools.values() for e in pool]
    templates = statistics.template_words(RewardConfig.preset("memory").template_frequency)

    def targets(episode):
        return episode_memory_targets(episode, first.steps, templates)

    scripted = {
        "oracle": lambda: OracleAgent(tokenizer),
        "wrong_fact": lambda: cases_module.WrongFactAgent(episodes, targets, settings.seed, tokenizer),
        "other_episode": lambda: cases_module.OtherEpisodeAgent(episodes, settings.seed, tokenizer=tokenizer),
        "constant": lambda: cases_module.OtherEpisodeAgent(episodes, settings.seed, constant=True,
                                                            tokenizer=tokenizer),
        "previous": lambda: cases_module.PreviousAnswerAgent(tokenizer),
        "history_dump": lambda: cases_module.HistoryDumpAgent(tokenizer),
        "empty": lambda: cases_module.EmptyAgent(tokenizer),
    }
    cases: dict[str, Agent] = {name: scripted[name]() for name in wanted}
    pairs = []
    for label, model in models.items():
        if not isinstance(model, RxTAgent):
            cases[label] = model  # a stateless baseline has no memory to reset
            continue
        cases[label] = model
        cases[f"{label} (reset memory)"] = RxTAgent(model.model, tokenizer, max_new_tokens=settings.max_new_tokens,
                                                     sampling=settings.sampling, seed=settings.seed,
                                                     write_memory=False)
        pairs.append((label, f"{label} (reset memory)"))
    meta = {"config": settings.config, "split": settings.split, "episodes": len(episodes),
            "similarity": settings.similarity, "saved_data": settings.saved_data,
            "sampling": describe_sampling(settings.sampling or GREEDY)}
    return run_audit(envs, cases, settings.num_episodes, memory_pairs=pairs, seed=settings.seed, meta=meta,
                     progress=progress)


def audit_plot_name(reward: str) -> str:
    """The file name of a reward's audit plot (``audit-NAME.png``, NAME made safe for file systems)."""
    import re

    return "audit-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", reward).strip("-") + ".png"


def write_audit(audit: Audit, out_dir, level: float = 0.95) -> dict[str, str]:
    """``audit.json`` (every figure, per-episode rewards included), ``audit.txt`` (the table) and one
    ``audit-REWARD.png`` per reward into ``out_dir``; returns the paths by name."""
    from pathlib import Path

    from rxmrl.evaluation.audit_plot import plot_reward_audit
    from rxmrl.runtime import write_json, write_text

    out = Path(out_dir)
    summary = audit.summary(level)
    paths = {"json": str(write_json(out / "audit.json", summary)),
             "table": str(write_text(out / "audit.txt", audit.format_table(level) + "\n"))}
    for name, reward_summary in summary["rewards"].items():
        paths[name] = str(plot_reward_audit(reward_summary, out / audit_plot_name(name)))
    return paths
