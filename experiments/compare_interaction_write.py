"""How a model trained here should write the turns it answers (``RxTConfig.interaction_write``), measured.

    python experiments/compare_interaction_write.py warm_start=RUN/warmstart/stage-4 [NAME=DIR ...]
        [--config steps-8] [--episodes 64] [--threads 1] [--max-new-tokens 48]

Every model answers the validation follow-ups greedily (``--max-new-tokens`` at most) with each write form:

- own answers: what the model answered is written into memory. The forms differ only on answers that the
  token limit cut (``closed`` adds an [EOS]) or that hold a generated [PAD] (``closed`` drops it);
- the retention protocol: the reference conversation is written. Reference answers are written the same in
  either form, so its two rows must agree (a check that the form reaches nothing else).

The table gives fact recall per form, and the paired difference as-generated - closed over the same episodes
with its 95% bootstrap interval, and how many of the model's answers the forms write differently (own answers).

Measured on 2026-12-07 (2-core CPU, one thread; steps-8 validation, 64 episodes; the quickstart's warm start,
/work/qs/runs/quickstart/warmstart/stage-4), at the eval's limit of 48 tokens and at two limits that cut
nearly every answer:

    limit  written         closed                  as-generated            as-generated - closed    differ
    48     own answers     0.218 [0.192, 0.243]    0.218 [0.192, 0.243]    +0.000 [+0.000, +0.000]    0/512
    48     reference       0.826 [0.800, 0.853]    0.826 [0.800, 0.853]    +0.000 [+0.000, +0.000]    -
    16     own answers     0.208 [0.188, 0.229]    0.215 [0.196, 0.234]    +0.007 [-0.008, +0.021]  510/512
    16     reference       0.823 [0.797, 0.850]    0.823 [0.797, 0.850]    +0.000 [+0.000, +0.000]    -
    8      own answers     0.160 [0.138, 0.182]    0.157 [0.136, 0.178]    -0.003 [-0.011, +0.004]  512/512
    8      reference       0.751 [0.721, 0.782]    0.751 [0.721, 0.782]    +0.000 [+0.000, +0.000]    -

The quickstart's MRL model (mrl/final) at 48 tokens: own answers 0.194 [0.173, 0.214] in both forms (0/512
answers differ), reference 0.815 [0.790, 0.841] in both.

Neither form recalls more. Models trained here keep ``closed``, the form of every interaction their supervised
stages write; the retention protocol's table (compare_retention.py) is unchanged: warm start 0.826
[0.800, 0.853], MRL 0.815 [0.790, 0.841], as the quickstart measured.
"""

from __future__ import annotations

import dataclasses

from compare_retention import parse_models, retention_parser

from rxmrl.model.config import INTERACTION_WRITES
from rxmrl.special_tokens import EOS_ID, PAD_ID


def counting(agent):
    """Wraps ``agent.answer_batch`` to count the answers the two forms write differently."""
    agent.answers = agent.differing = 0
    answer_batch = agent.answer_batch

    def counted(queries):
        answers = answer_batch(queries)
        for row in answers.to_lists():  # [A] a... ([EOS] when generated)
            agent.answers += 1
            agent.differing += row[-1] != EOS_ID or PAD_ID in row[1:]
        return answers

    agent.answer_batch = counted
    return agent


def measure(model, env, episodes: int, max_new_tokens: int):
    """``{form: (result, answers, answers written differently)}`` for one model on ``env``."""
    from rxmrl.envs.agents import RxTAgent
    from rxmrl.evaluation.reward_range import evaluate

    out = {}
    for write in INTERACTION_WRITES:
        model.config = dataclasses.replace(model.config, interaction_write=write)
        agent = counting(RxTAgent(model, env.tokenizer, max_new_tokens=max_new_tokens, seed=0))
        agent.name = write
        out[write] = (evaluate(agent, env, episodes, seed=0), agent.answers, agent.differing)
    return out


def main() -> None:
    parser = retention_parser(__doc__.splitlines()[0], "checkpoints trained here")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="the answer token limit (the eval's)")
    args = parser.parse_args()
    specs = parse_models(parser, args)

    import torch

    from rxmrl.evaluation.compare import compare
    from rxmrl.evaluation.retention import retention_env
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = RxTokenizer.load(next(iter(specs.values())))
    print(f"{'model':<14}{'written':<18}{'closed':>24}{'as-generated':>24}{'as-generated - closed':>28}"
          f"{'differ':>12}")
    for name, path in specs.items():
        for written, forcing in (("own answers", False), ("reference", True)):
            env = retention_env(tokenizer, args.config, split=args.split, num_episodes=args.episodes,
                                teacher_forcing=forcing)
            model = ReactiveTransformer.from_pretrained(path).eval()
            runs = measure(model, env, args.episodes, args.max_new_tokens)
            (closed, _, _), (generated, answers, differing) = runs["closed"], runs["as-generated"]
            difference = compare(generated, closed).fact_recall_difference
            print(f"{name:<14}{written:<18}{closed.recall().interval():>24}{generated.recall().interval():>24}"
                  f"{difference.interval(signed=True):>28}{f'{differing}/{answers}' if not forcing else '-':>12}")


if __name__ == "__main__":
    main()
