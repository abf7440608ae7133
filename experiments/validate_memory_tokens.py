"""Memory-token recall against annotated fact recall on the embedded curriculum.

Memory tokens need no annotation; the embedded curriculum names each follow-up's facts, so it can check
them. Every answer (one episode step) of the oracle, the wrong-fact case and, with ``--checkpoint``, a model
with and without its memory is scored both ways; the script prints, per variant of the memory term:

* agreement: the share of answers on which both say the same, ``[fact recall >= 0.5] == [memory >= 0.5]``;
* Spearman's rank correlation of the two over all answers (average ranks for ties);
* each case's mean.

Cases: the oracle; the reference with only its annotated facts swapped for other episodes' (memory tokens are
not told which words those are); the audit's wrong-fact case (facts and memory tokens swapped); and with
``--checkpoint`` the model's own answers with and without its memory.

Variants: recall / precision / F1, with the template-word cut (default) and without it
(``template_frequency=1``: nothing is a template), so the choices in ``rxmrl/rewards/memory_tokens.py``
have their measured reason.

    python experiments/validate_memory_tokens.py --episodes 64 --checkpoint runs/quickstart/warmstart/stage-4
"""

from __future__ import annotations

import argparse

import numpy as np

from rxmrl.envs import BatchedMrlEnv, OracleAgent, RxTAgent
from rxmrl.envs.scoring import build_reward
from rxmrl.evaluation import evaluate
from rxmrl.evaluation.agents import load_agent, load_tokenizer_for
from rxmrl.evaluation.audit_cases import WrongFactAgent
from rxmrl.rewards import MemoryTarget, RewardConfig, episode_memory_targets


def average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2
        start = end + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="steps-8")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--checkpoint", default=None, help="a model folder: its answers with and without memory")
    args = parser.parse_args()

    tokenizer = load_tokenizer_for(args.checkpoint)
    variants = {"with template cut": RewardConfig.preset("memory"),
                "no template cut": RewardConfig.preset("memory", template_frequency=1.0)}
    envs = {name: BatchedMrlEnv(32, "embedded", None, "validation", config=args.config, num_episodes=args.episodes,
                                reward=build_reward(cfg, "random-embedding", tokenizer), tokenizer=tokenizer,
                                order="sequential")
            for name, cfg in variants.items()}
    first = next(iter(envs.values()))
    episodes = [e for pool in first.sampler.pools.values() for e in pool]
    templates = first.statistics.get().template_words(variants["with template cut"].template_frequency)
    print(f"{len(episodes)} episodes of {args.config}/validation; template words ({len(templates)}): "
          f"{', '.join(sorted(templates))}")
    no_targets = lambda e: [MemoryTarget(frozenset(), frozenset())] * first.steps  # noqa: E731
    cases = {"oracle": lambda: OracleAgent(tokenizer),
             # the annotated facts swapped, memory tokens left alone: do memory tokens notice on their own?
             "wrong_fact (facts only)": lambda: WrongFactAgent(episodes, no_targets, tokenizer=tokenizer),
             "wrong_fact": lambda: WrongFactAgent(episodes, lambda e: episode_memory_targets(e, first.steps,
                                                                                             templates),
                                                  tokenizer=tokenizer)}
    if args.checkpoint:  # a fresh agent per variant: the same STM noise, so the same answers
        model = load_agent(args.checkpoint, tokenizer=tokenizer)
        cases["model"] = lambda: RxTAgent(model.model, tokenizer)
        cases["model (reset memory)"] = lambda: RxTAgent(model.model, tokenizer, write_memory=False)

    for variant, env in envs.items():
        rows = {name: evaluate(make(), env, args.episodes, seed=0) for name, make in cases.items()}
        facts = np.concatenate([r.fact_recall.ravel() for r in rows.values()])
        print(f"\n{variant}:")
        print(f"  {'term':<10}{'agreement':>10}{'spearman':>10}   " + "".join(f"{c:>26}" for c in rows))
        for term in ("memory_recall", "memory_precision", "memory"):
            scores = np.concatenate([r.components[term].ravel() for r in rows.values()])
            keep = ~np.isnan(scores) & ~np.isnan(facts)
            agreement = float(np.mean((facts[keep] >= 0.5) == (scores[keep] >= 0.5)))
            means = "".join(f"{np.nanmean(r.components[term]):>26.3f}" for r in rows.values())
            label = "F1" if term == "memory" else term.split("_")[1]
            print(f"  {label:<10}{agreement:>10.3f}{spearman(facts[keep], scores[keep]):>10.3f}   {means}")
        print(f"  {'fact':<30}   " + "".join(f"{np.nanmean(r.fact_recall):>26.3f}" for r in rows.values()))
        empty = np.mean([np.isnan(r.components["memory"]).mean() for r in rows.values()])
        print(f"  steps without memory tokens: {empty:.3f}")


if __name__ == "__main__":
    main()
