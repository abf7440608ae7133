"""``rxmrl eval``: the reward range of an agent (oracle, random, or a checkpoint) on a curriculum split.

    rxmrl eval --agent runs/quickstart/mrl/final --config steps-8      # our row, then the published rows
    rxmrl eval --compare runs/quickstart/mrl/final runs/quickstart/warmstart/stage-4
    rxmrl eval --compare runs/quickstart/mrl/final runs/quickstart/dmpo/final runs/quickstart/warmstart/stage-4

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
    which.add_argument("--compare", nargs="+", metavar="AGENT",
                       help="agents on the same episodes, the last the baseline: every row and each one's paired "
                            "difference to the baseline (two: A - B)")
    parser.add_argument("--config", default="steps-8", help="curriculum config, steps-N or steps-N-lr")
    parser.add_argument("--split", default="validation", help="train | validation | supervised")
    parser.add_argument("--source", default="embedded", help="embedded | a local folder/file | a hub id")
    parser.add_argument("--episodes", type=int, default=None, help="number of episodes (default: the split)")
    parser.add_argument("--steps", type=int, default=None, help="steps per episode (default: the config's)")
    parser.add_argument("--strategy", default=None, choices=("cumulative", "long_range", "mixed"),
                        help="default: long_range for -lr configs, else cumulative")
    parser.add_argument("--reward", default="default",
                        help="reward preset: default | memory | rxlm | rxnn-len (rxmrl.rewards.PRESETS)")
    parser.add_argument("--similarity", default="encoder",
                        choices=("encoder", "policy-embedding", "random-embedding"),
                        help="cosine backend: the frozen sentence encoder; a frozen copy of the checkpoint's token "
                             "embeddings (one checkpoint only); or fixed random token embeddings")
    parser.add_argument("--saved-data", default="conversation", choices=("conversation", "as_written"),
                        help="score each step against the conversation as the data has it (default), or against "
                             "the interactions as written into memory (the reference design; see MrlEnv)")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes stepped together")
    parser.add_argument("--teacher-forcing", action="store_true", help="write reference answers to memory")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit (checkpoints)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sample the checkpoints' answers at this temperature (default: greedy decoding)")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens only")
    parser.add_argument("--top-p", type=float, default=None, help="sample from the nucleus of mass p only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.set_defaults(func=_eval)
    _add_audit(subparsers)


def _add_audit(subparsers: argparse._SubParsersAction) -> None:
    reward = subparsers.add_parser("reward", help="study rewards: how much a reward measures memory")
    commands = reward.add_subparsers(dest="reward_command", metavar="COMMAND", required=True)
    audit = commands.add_parser(
        "audit", help="score known answers (oracle, wrong fact, constant, copy, history dump, empty, another "
                      "episode's; a model with vs without memory) with each reward: means, paired gaps, win rates",
        description="Plays every case on the same validation episodes and scores it with each reward. Writes "
                    "OUT/audit.json, OUT/audit.txt and OUT/audit-REWARD.png, and prints the table.")
    audit.add_argument("--preset", action="append", default=None, metavar="NAME",
                       help="a reward preset to audit (repeat; default: every preset)")
    audit.add_argument("--reward-callable", action="append", default=[], metavar="MODULE:NAME",
                       help="a reward callable by import path (a factory taking tokenizer= is called with it)")
    audit.add_argument("--similarity", default="encoder", choices=("encoder", "policy-embedding", "random-embedding"),
                       help="cosine backend of the presets (policy-embedding: the first checkpoint's embeddings)")
    audit.add_argument("--saved-data", default="conversation", choices=("conversation", "as_written"),
                       help="what each step is scored against (see rxmrl.envs.MrlEnv)")
    audit.add_argument("--source", default="embedded", help="embedded | a local folder/file | a hub id")
    audit.add_argument("--config", default="steps-8", help="curriculum config, steps-N or steps-N-lr")
    audit.add_argument("--split", default="validation")
    audit.add_argument("--episodes", type=int, default=64, help="episodes (default 64)")
    audit.add_argument("--batch-size", type=int, default=32)
    audit.add_argument("--checkpoint", action="append", default=[], metavar="[LABEL=]DIR",
                       help="a model to audit with its memory and with a reset memory (repeat)")
    audit.add_argument("--cases", default=None, help="comma-separated scripted cases (default: all)")
    audit.add_argument("--out", default="runs/reward-audit", help="output folder")
    audit.add_argument("--max-new-tokens", type=int, default=48)
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--device", default="cpu")
    audit.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rxmrl.data import CurriculumValidationError
    from rxmrl.evaluation.audit import AuditSettings, audit_rewards, write_audit
    from rxmrl.model.rxt import check_folder
    from rxmrl.runtime import check_counts, check_output

    check_counts(args, "episodes", "max_new_tokens", "batch_size")
    check_output(args.out, "--out", folder=True)
    try:
        checkpoints = {}
        for spec in args.checkpoint:
            label, _, path = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
            check_folder(path, "--checkpoint", kind="rxt")  # audited with and without its memory
            checkpoints[label or Path(path).name] = path
        if args.episodes < 2:
            raise ValueError(f"--episodes {args.episodes}: the audit pairs episodes, give at least 2")
        settings = AuditSettings(
            presets=args.preset or AuditSettings().presets, callables=args.reward_callable,
            similarity=args.similarity, saved_data=args.saved_data, source=args.source, config=args.config,
            split=args.split, num_episodes=args.episodes, batch_size=args.batch_size, checkpoints=checkpoints,
            cases=[c.strip() for c in args.cases.split(",")] if args.cases else None,
            max_new_tokens=args.max_new_tokens, seed=args.seed, device=args.device)
        audit = audit_rewards(settings, progress=lambda case: print(f"  played {case}", file=sys.stderr, flush=True))
    except (CurriculumValidationError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_audit(audit, args.out)
    print(audit.format_table())
    print(f"\nwrote {paths['json']}, {paths['table']} and {len(paths) - 2} plot(s)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rxmrl.data import CurriculumValidationError

    from rxmrl.evaluation.agents import check_agents
    from rxmrl.runtime import check_counts
    from rxmrl.evaluation.published import format_published_rows

    check_counts(args, "episodes", "max_new_tokens", "batch_size")
    check_agents(args.compare or [args.agent], "--compare" if args.compare else "--agent")
    try:
        if args.compare:
            from rxmrl.evaluation.compare import compare, compare_with_baseline

            if len(args.compare) < 2:
                raise ValueError(f"--compare needs two agents or more, got {args.compare}")
            results = [run_eval(argparse.Namespace(**{**vars(args), "agent": spec})) for spec in args.compare]
            if len(results) == 2:
                result = compare(*results)
            else:
                result = compare_with_baseline(results[:-1], results[-1], args.compare)
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


def eval_sampling(args: argparse.Namespace):
    """Greedy decoding, unless ``--temperature``, ``--top-k`` or ``--top-p`` asks for sampling."""
    from rxmrl.model.sampling import GREEDY, SamplingConfig

    if args.temperature is None and args.top_k is None and args.top_p is None:
        return GREEDY
    temperature = 1.0 if args.temperature is None else args.temperature
    return SamplingConfig(temperature=temperature, top_k=args.top_k, top_p=args.top_p)


def run_eval(args: argparse.Namespace):
    from rxmrl.envs import BatchedMrlEnv
    from rxmrl.envs.scoring import build_reward
    from rxmrl.evaluation.agents import AGENT_NAMES, load_agent, load_tokenizer_for
    from rxmrl.evaluation.reward_range import evaluate
    from rxmrl.model.sampling import describe_sampling
    from rxmrl.rewards import check_preset

    check_preset(args.reward, "--reward")
    if args.similarity == "policy-embedding" and (getattr(args, "compare", None) or args.agent in AGENT_NAMES):
        raise ValueError("--similarity policy-embedding scores with one checkpoint's own token embeddings: give one "
                         "checkpoint with --agent (for --compare, oracle or random use encoder or random-embedding)")
    tokenizer = load_tokenizer_for(None if args.agent in AGENT_NAMES else args.agent)
    own_embedding = args.similarity == "policy-embedding"  # known once the agent is loaded
    env = BatchedMrlEnv(args.batch_size, args.source, args.steps, args.split, config=args.config,
                        strategy=args.strategy, num_episodes=args.episodes, reward=args.reward,
                        similarity="random-embedding" if own_embedding else args.similarity, tokenizer=tokenizer,
                        teacher_forcing=args.teacher_forcing, order="sequential", seed=args.seed,
                        device=args.device, saved_data=args.saved_data)
    episodes = [e for pool in env.sampler.pools.values() for e in pool]
    sampling = eval_sampling(args)
    agent = load_agent(args.agent, episodes, tokenizer=tokenizer, seed=args.seed,
                       max_new_tokens=args.max_new_tokens, device=args.device, sampling=sampling)
    if own_embedding:
        env.set_reward(build_reward(args.reward, "policy-embedding", tokenizer, policy=agent))
    meta = {"config": args.config, "split": args.split,
            "scoring": f"{args.reward} ({args.similarity}, {args.saved_data})", "sampling": describe_sampling(sampling)}
    return evaluate(agent, env, args.episodes, seed=args.seed, meta=meta)
