"""How much learning signal about recall a policy's own samples carry: G answers per follow-up from one STM.

    python experiments/recall_signal.py NAME=DIR [NAME=DIR ...] [--samples 8] [--temperature 1.0] [--top-k 50]
        [--config steps-8] [--episodes 64] [--threads 1]

Why. A policy-gradient learner can only raise the recall of a follow-up whose sampled answers sometimes state
the fact and sometimes do not: with a group of G answers drawn from the same STM (grpo / rloo), the group
baseline leaves a non-zero advantage only where the members' recall differs. If the answers to a follow-up
almost never state the fact (p = 0) no sample is ever rewarded for it; if they almost always do (p = 1) greedy
decoding already states it. Greedy recall can only move on the follow-ups in between. Per model, with the
reference conversation written into memory (the retention protocol, :mod:`rxmrl.evaluation.retention`):

    r_g(i, j)   fact recall of answer g to follow-up j of episode i, g = 1..G, at the MRL rollout's sampling
    p(i, j)     mean_g r_g(i, j)                                          the follow-up's sampled recall
    within      E_ij[ var_g r_g(i, j) ] / var_ijg r_g(i, j)               share of the variance a same-STM group sees
    mixed       fraction of follow-ups whose G answers differ in recall   groups with a non-zero recall advantage
    reachable   of the follow-ups greedy decoding misses (recall 0), the fraction with some sample above 0
    p on misses mean p over those follow-ups: how often the policy's own samples state what greedy misses

and the same G samples with a reset memory, to tell what memory makes reachable from what the query alone does.
Fractions are per episode first (mean over its follow-ups with facts), then the mean over episodes with a 95%
bootstrap interval.

Measured on 2026-12-04 (2-core AMD EPYC without AVX-512, one thread, two runs side by side; steps-8 validation,
64 episodes, G = 8 at temperature 1, top-k 50 as the quickstart's MRL rollouts). The warm starts are stage 4 of
experiments/warmstart.toml from one stage-3 checkpoint, seed 0 (the quickstart's, bit for bit: its probe reads
0.455 / 0.486 / 0.475 at steps 1000 / 1250 / 1500 as in the quickstart) and seed 1; MRL is
experiments/mrl_quickstart.toml from seed 0 (its per-stage recall gains +0.008 / +0.003 / -0.011, the quickstart's):

    figure                               seed 0 (weak)           seed 1 (reads memory)  MRL from seed 0
    greedy recall                        0.331 [0.299, 0.363]    0.676 [0.645, 0.708]   0.320 [0.285, 0.355]
    sampled recall p                     0.322 [0.292, 0.349]    0.585 [0.559, 0.613]   0.328 [0.298, 0.356]
    sampled, reset memory                0.073 [0.065, 0.082]    0.076 [0.068, 0.085]   0.071 [0.062, 0.079]
    within-group share (reset memory)    0.220 (0.836)           0.318 (0.859)          0.238 (0.841)
    p = 0 (never stated)                 0.332 [0.291, 0.375]    0.098 [0.074, 0.121]   0.330 [0.291, 0.373]
    p = 1 (always stated)                0.189 [0.160, 0.221]    0.314 [0.281, 0.348]   0.186 [0.152, 0.219]
    mixed groups                         0.438 [0.391, 0.482]    0.559 [0.518, 0.602]   0.441 [0.398, 0.484]
    reachable (of greedy misses)         0.502 [0.444, 0.562]    0.619 [0.522, 0.716]   0.481 [0.420, 0.539]
    reachable, reset memory              0.445 [0.396, 0.496]    0.542 [0.443, 0.638]   0.420 [0.366, 0.471]
    p on greedy misses                   0.069 [0.060, 0.079]    0.127 [0.101, 0.158]   0.073 [0.061, 0.086]
    p on greedy misses, reset memory     0.059 [0.052, 0.067]    0.077 [0.061, 0.094]   0.062 [0.052, 0.072]

What it says about learning recall from the policy's own samples:
- Most of the recall variance lies between follow-ups (78% and 68%), which a same-STM group cancels; with a reset
  memory it is the reverse (84-86% within), i.e. what memory adds is decided by the STM, not by the draw.
- On the follow-ups greedy decoding misses, which are the only ones where greedy recall can rise, the samples state the
  fact 6.9% of the time with memory and 5.9% with a reset memory (seed 0); 12.7% and 7.7% (seed 1). At those
  rates about five of every six rewarded answers there (three of five on seed 1) are what the query alone
  produces. A recall reward on those follow-ups mostly pays for guessing, which does not carry
  over to held-out facts. That fits the training reward rising while held-out recall stays flat (the header of
  experiments/mrl_quickstart.toml).
- MRL leaves the picture as it found it: p 0.322 -> 0.328, never stated 0.332 -> 0.330, p on greedy misses
  0.069 -> 0.073 (reset memory 0.059 -> 0.062).

The same from seed 0 with a reward that pays only for recall (`--set reward.fact_weight=1.0`; its per-stage recall
gains +0.008 / +0.011 / -0.009), on the validation episodes and on 64 of the `train` episodes its last stage trained on
(the warm start and the quickstart's MRL beside it on those):

    figure                               recall-only MRL, val.   warm start, train       MRL, train              recall-only MRL, train
    greedy recall                        0.329 [0.294, 0.362]    0.273 [0.241, 0.305]    0.275 [0.242, 0.309]    0.301 [0.268, 0.335]
    sampled, reset memory                0.075 [0.066, 0.083]    0.091 [0.081, 0.102]    0.078 [0.068, 0.088]    0.085 [0.077, 0.094]
    p on greedy misses                   0.072 [0.064, 0.080]    0.068 [0.060, 0.077]    0.064 [0.054, 0.075]    0.073 [0.064, 0.083]
    p on greedy misses, reset memory     0.069 [0.060, 0.077]    0.079 [0.069, 0.089]    0.060 [0.051, 0.070]    0.071 [0.062, 0.080]

- On the episodes it trained on, the warm start's samples state a missed fact no more often with memory than without
  (0.068 vs 0.079): there the whole recall signal is what the query alone produces.
- Paid only for recall, MRL leaves the with-memory rate on misses where it was (0.069 -> 0.072 on validation). The
  reset-memory rate rises (0.059 -> 0.069), so what it learns is to guess from the query. One seed, intervals unpaired:
  an observation.
"""

from __future__ import annotations

import numpy as np


def signal_table(greedy: np.ndarray, sampled: np.ndarray, reset: np.ndarray) -> dict[str, np.ndarray]:
    """Per-episode figures from ``greedy`` (N, S), ``sampled`` (G, N, S) and ``reset`` (G, N, S) recall, NaN where
    a follow-up has no facts. Returns name -> (N,) values (NaN where an episode has no such follow-up)."""
    from rxmrl.evaluation.reward_range import episode_means

    facts = ~np.isnan(greedy)
    p, p_reset = sampled.mean(axis=0), reset.mean(axis=0)
    spread = sampled.max(axis=0) - sampled.min(axis=0)
    missed = facts & (greedy == 0)

    def per_episode(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        return episode_means(np.where(where, values, np.nan))

    return {
        "greedy recall": per_episode(greedy, facts),
        "sampled recall p": per_episode(p, facts),
        "sampled, reset memory": per_episode(p_reset, facts),
        "p = 0 (never stated)": per_episode((sampled.max(axis=0) == 0).astype(float), facts),
        "p = 1 (always stated)": per_episode((sampled.min(axis=0) == 1).astype(float), facts),
        "mixed groups": per_episode((spread > 0).astype(float), facts),
        "reachable (of greedy misses)": per_episode((sampled.max(axis=0) > 0).astype(float), missed),
        "reachable, reset memory": per_episode((reset.max(axis=0) > 0).astype(float), missed),
        "p on greedy misses": per_episode(p, missed),
        "p on greedy misses, reset memory": per_episode(p_reset, missed),
    }


def within_share(sampled: np.ndarray) -> float:
    """E[var within a follow-up's G answers] / total variance of the answers' recall (NaN: no variance)."""
    facts = ~np.isnan(sampled[0])
    values = sampled[:, facts]  # (G, cells)
    total = values.var()
    return float(values.var(axis=0).mean() / total) if total > 0 else float("nan")


def main() -> None:
    from compare_retention import parse_models, retention_env, retention_parser  # the script beside this one

    parser = retention_parser(__doc__.splitlines()[0], "RxT checkpoints")
    parser.add_argument("--samples", type=int, default=8, help="G: answers sampled per follow-up from one STM")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=50)
    args = parser.parse_args()
    specs = parse_models(parser, args)
    if args.samples < 2:
        parser.error(f"--samples {args.samples}: a group needs at least 2 answers")

    import torch

    from rxmrl.envs.agents import RxTAgent
    from rxmrl.evaluation.reward_range import Stat, evaluate
    from rxmrl.model import ReactiveTransformer, SamplingConfig
    from rxmrl.model.sampling import describe_sampling
    from rxmrl.tokenizer import RxTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = RxTokenizer.load(next(iter(specs.values())))
    env = retention_env(args, tokenizer)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k)
    print(f"{args.config} {args.split}, {args.episodes} episodes, reference conversation in memory; "
          f"G = {args.samples} answers per follow-up, {describe_sampling(sampling)}\n")
    for name, path in specs.items():
        model = ReactiveTransformer.from_pretrained(path)

        def recall(write_memory: bool, sampling_config=None, seed: int = 0) -> np.ndarray:
            agent = RxTAgent(model, tokenizer, max_new_tokens=48, sampling=sampling_config, seed=seed,
                             write_memory=write_memory)
            return evaluate(agent, env, args.episodes, seed=0).fact_recall

        greedy = recall(True)
        sampled = np.stack([recall(True, sampling, seed=1 + g) for g in range(args.samples)])
        reset = np.stack([recall(False, sampling, seed=1 + g) for g in range(args.samples)])
        print(f"{name} ({path}): within-group share of the recall variance {within_share(sampled):.3f} "
              f"(reset memory {within_share(reset):.3f})")
        for label, values in signal_table(greedy, sampled, reset).items():
            print(f"  {label:<34}{Stat.of(values).interval():>26}")
        print()


if __name__ == "__main__":
    main()
