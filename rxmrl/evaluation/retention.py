"""Retention: how much of the conversation a model recalls from its memory, with intervals.

Why a protocol of its own. In the standard evaluation the agent writes its *own* answers into memory, but a
curriculum follow-up often asks about a scene that only the *reference* answer of the previous follow-up told
("Where did Lily walk with Tom?" after a reference answer that ended "...walked with Tom to the park").
No memory can recall a fact it was never given, so recall under the agent's writes mostly measures guessing
(see :func:`rxmrl.rewards.held_fact_recall`). Retention is measured with the *reference* conversation
written into memory (teacher forcing of the writes; the model still answers every follow-up itself), and
with a reset memory on the same episodes::

    recall(model)       fact recall with the conversation written into memory
    gap(model)          recall(model) - recall(model, memory never written)      what memory carries
    gain(model)         recall(model) - recall(baseline)                          e.g. MRL over its warm start

Long-range episodes (``steps-N-lr``) give the same three for their *final recall* on its own: the final
question, about the first interaction after N - 1 distractor turns; cumulative episodes have none (``None``).

Every difference is paired over episodes (:func:`rxmrl.evaluation.compare.compare`): percentile bootstrap
of the per-episode differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rxmrl.envs import BatchedMrlEnv
from rxmrl.envs.agents import RxTAgent
from rxmrl.evaluation.compare import Comparison, compare
from rxmrl.evaluation.reward_range import EvaluationResult, as_dict_or_none, evaluate
from rxmrl.model import ReactiveTransformer, SamplingConfig


@dataclass
class Retention:
    """Per model: the results with and without memory, the memory gap, and the gain over ``baseline``."""

    with_memory: dict[str, EvaluationResult]
    reset_memory: dict[str, EvaluationResult]
    gap: dict[str, Comparison]  # model with memory - the same model with a reset memory
    gain: dict[str, Comparison]  # model - baseline, both with memory (every model but the baseline)
    baseline: str | None

    def summary(self, level: float = 0.95) -> dict[str, Any]:
        """Plain numbers (``json.dumps``-able): recall, final recall (``None``: no long-range final question)
        and reward of each model and its differences."""
        def stats(result: EvaluationResult) -> dict[str, Any]:
            return {"fact_recall": result.recall(level).as_dict(),
                    "final_recall": as_dict_or_none(result.final_question_recall(level)),
                    "reward": result.reward(level).as_dict(), "episodes": result.num_episodes, **result.meta}

        def difference(c: Comparison) -> dict[str, Any]:
            return {"fact_recall": c.fact_recall_difference.as_dict(),
                    "final_recall": as_dict_or_none(c.final_recall_difference), "reward": c.reward_difference.as_dict()}

        return {"protocol": "reference conversation written into memory; the model answers every follow-up",
                "baseline": self.baseline,
                "models": {name: {"with_memory": stats(self.with_memory[name]),
                                  "reset_memory": stats(self.reset_memory[name]),
                                  "gap": difference(self.gap[name]),
                                  **({"gain": difference(self.gain[name])} if name in self.gain else {})}
                           for name in self.with_memory}}

    def format_table(self, level: float = 0.95) -> str:
        """Fact recall per model, then the final recall the same way (or a line saying there is none)."""
        pct = f"{level:.0%}"
        header = (f"{'model':<14}{'recall [' + pct + ' CI]':>24}{'reset memory':>24}{'memory gap':>26}"
                  f"{'gain over ' + (self.baseline or '-'):>28}")
        lines = ["retention: the reference conversation written into memory, the model answers every follow-up",
                 header, *self._rows(level, EvaluationResult.recall, "fact_recall_difference")]
        if all(result.final_question_recall(level) is None for result in self.with_memory.values()):
            return "\n".join([*lines, "final recall: none (cumulative episodes have no long-range final question)"])
        return "\n".join([*lines, "final recall: the long-range final question about the first interaction",
                          header, *self._rows(level, EvaluationResult.final_question_recall,
                                              "final_recall_difference")])

    def _rows(self, level: float, recall_of, difference: str) -> list[str]:
        """One line per model: ``recall_of(result)`` with memory and reset, the gap and the gain (a Comparison's
        ``difference`` attribute); ``n/a`` where a value is absent."""
        def interval(stat, signed: bool = False) -> str:
            return "n/a" if stat is None else stat.interval(signed=signed)

        lines = []
        for name, result in self.with_memory.items():
            gain = interval(getattr(self.gain[name], difference), signed=True) if name in self.gain else "-"
            lines.append(f"{name:<14}{interval(recall_of(result, level)):>24}"
                         f"{interval(recall_of(self.reset_memory[name], level)):>24}"
                         f"{interval(getattr(self.gap[name], difference), signed=True):>26}{gain:>28}")
        return lines


def retention_env(tokenizer, config: str = "steps-8", *, split: str = "validation", num_episodes: int = 64,
                  source: str = "embedded", data_seed: int = 0, batch_size: int = 32,
                  teacher_forcing: bool = True) -> BatchedMrlEnv:
    """The episodes of ``config`` (``steps-N``, or ``steps-N-lr``: long range, whose final question is the
    ``final_recall``) / ``split`` in a fixed order with the reference conversation written into memory (the
    protocol). Recall does not depend on the reward scored beside it, so the cheapest one is used.
    ``teacher_forcing=False``: the same episodes with the agent's own answers written (what depends on how the
    agent writes them)."""
    return BatchedMrlEnv(batch_size, source, None, split, config=config, num_episodes=num_episodes,
                         data_seed=data_seed, reward="default", similarity="random-embedding", tokenizer=tokenizer,
                         order="sequential", seed=0, teacher_forcing=teacher_forcing)


def measure_retention(models: Mapping[str, ReactiveTransformer], env: BatchedMrlEnv,
                      num_episodes: int | None = None, *, baseline: str | None = None, max_new_tokens: int = 48,
                      sampling: SamplingConfig | None = None, seed: int = 0,
                      meta: Mapping[str, Any] | None = None) -> Retention:
    """Every model on the same episodes of ``env`` with memory and with a reset memory (greedy answers unless
    ``sampling`` says otherwise).

    ``env`` must write the reference answers (``teacher_forcing=True``): that is the protocol. ``baseline``
    (one of ``models``) is what the others' gain is measured against.
    """
    if not env.teacher_forcing:
        raise ValueError("measure_retention needs an env built with teacher_forcing=True: retention is measured "
                         "with the reference conversation written into memory")
    if baseline is not None and baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of the models {list(models)}")
    with_memory, reset = {}, {}
    for name, model in models.items():
        for write_memory, results in ((True, with_memory), (False, reset)):
            agent = RxTAgent(model, env.tokenizer, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed,
                             write_memory=write_memory)
            agent.name = name if write_memory else f"{name} (reset memory)"
            results[name] = evaluate(agent, env, num_episodes, seed=seed, meta=dict(meta or {}))
    gap = {name: compare(with_memory[name], reset[name]) for name in models}
    gain = ({name: compare(with_memory[name], with_memory[baseline]) for name in models if name != baseline}
            if baseline is not None else {})
    return Retention(with_memory, reset, gap, gain, baseline)
