"""``rxmrl eval``: the reward range of an agent (oracle, random, or a checkpoint) on a curriculum split.

    rxmrl eval --agent runs/quickstart/mrl/final --config steps-8      # our row, then the published rows
    rxmrl eval --compare runs/quickstart/mrl/final runs/quickstart/warmstart/stage-4

The top level stays light (only argparse); torch, the env and the encoder load inside the handler.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="reward range (mean/min/max, per step) and fact recall of an agent on a curriculum split")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--agent", help="oracle | random | a checkpoint folder (save_pretrained)")
    which.add_argument("--compare", nargs=2, metavar=("A", "B"),
                       help="two agents on the same episodes: both rows and the paired difference A - B")
    parser.add_argument("--config", default="steps-8", help="curriculum config, steps-N or steps-N-lr")
    parser.add_argument("--split", default="validation", help="train | validation | supervised")
    parser.add_argument("--source", default="embedded", help="embedded | a local folder/file | a hub id")
    parser.add_argument("--episodes", type=int, default=None, help="number of episodes (default: the split)")
    parser.add_argument("--steps", type=int, default=None, help="steps per episode (default: the config's)")
    parser.add_argument("--strategy", default=None, choices=("cumulative", "long_range", "mixed"),
                        help="default: long_range for -lr configs, else cumulative")
    parser.add_argument("--reward", default="default", help="reward preset: default | rxlm | rxnn-len")
    parser.add_argument("--similarity", default="encoder", choices=("encoder", "token"),
                        help="cosine backend: the frozen sentence encoder, or mean token embeddings "
                             "(the checkpoint's, frozen; fixed random ones for oracle/random)")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes stepped together")
    parser.add_argument("--teacher-forcing", action="store_true", help="write reference answers to memory")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (checkpoints)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    from rxmrl.data import CurriculumValidationError

    from rxmrl.evaluation.published import format_published_rows

    try:
        if args.compare:
            from rxmrl.evaluation.compare import compare

            first, second = (run_eval(argparse.Namespace(**{**vars(args), "agent": spec})) for spec in args.compare)
            result = compare(first, second)
        else:
            result = run_eval(args)
    except (CurriculumValidationError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(result.format_table() + "\n\n" + format_published_rows())
    return 0


def run_eval(args: argparse.Namespace):
    from rxmrl.envs import BatchedMrlEnv
    from rxmrl.evaluation.agents import AGENT_NAMES, load_agent, load_tokenizer_for
    from rxmrl.evaluation.reward_range import evaluate

    tokenizer = load_tokenizer_for(None if args.agent in AGENT_NAMES else args.agent)
    env = BatchedMrlEnv(args.batch_size, args.source, args.steps, args.split, config=args.config,
                        strategy=args.strategy, num_episodes=args.episodes, reward=args.reward,
                        similarity="encoder", tokenizer=tokenizer, teacher_forcing=args.teacher_forcing,
                        order="sequential", seed=args.seed, device=args.device)
    episodes = [e for pool in env.sampler.pools.values() for e in pool]
    agent = load_agent(args.agent, episodes, tokenizer=tokenizer, seed=args.seed,
                       max_new_tokens=args.max_new_tokens, device=args.device)
    if args.similarity == "token":
        if getattr(args, "compare", None):  # one reward for both: fixed token embeddings, not each model's own
            from rxmrl.envs.scoring import RewardScorer, build_reward, token_similarity

            env.reward = build_reward(args.reward, token_similarity(env.tokenizer), env.tokenizer)
            env.scorer = RewardScorer(env.reward)
        else:
            env = _with_token_similarity(env, agent, args)
    meta = {"config": args.config, "split": args.split, "scoring": f"{args.reward} ({args.similarity})"}
    return evaluate(agent, env, args.episodes, seed=args.seed, meta=meta)


def _with_token_similarity(env, agent, args):
    """Rebuilds the env's reward on frozen token embeddings: the checkpoint's, or fixed random ones."""
    from rxmrl.envs.scoring import RewardScorer, build_reward, token_similarity
    from rxmrl.rewards import TokenEmbeddingSimilarity

    model = getattr(agent, "model", None)
    embedding = getattr(model, "embedding", None) or getattr(model, "get_input_embeddings", lambda: None)()
    backend = (TokenEmbeddingSimilarity(embedding.weight, encode=env.tokenizer.encode) if model is not None
               else token_similarity(env.tokenizer))
    env.reward = build_reward(args.reward, backend, env.tokenizer)
    env.scorer = RewardScorer(env.reward)
    return env
