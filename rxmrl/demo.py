"""``rxmrl demo``: talk to a Reactive Transformer one event at a time, offline.

The demo shows what makes RxT different from a stateless chat model: each turn the decoder reads only the
new query and its Short-Term Memory, streams the answer, and *then* the memory is updated (the markers
``-1``/``-2`` of :meth:`ReactiveTransformer.interact` are shown as ``[memory update…]`` / ``[memory
updated]``). The per-turn latency stays flat however long the conversation grows.

With a TTY on stdin it is an interactive chat (an empty line or Ctrl-C ends it); piped input is one query a
line. With ``--scripted`` it replays an embedded validation episode: the saved interaction is written into
memory first, then the follow-up questions are asked and the reference answers shown beside the model's.
A query longer than the model's ``max_seq_len`` (with the answer it may write) is not answered: a note on
stderr says so, and the conversation goes on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Turn:
    query: str
    answer: str
    answer_seconds: float  # time to stream the answer (what a user waits for)
    memory_seconds: float  # the asynchronous memory update after it


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="chat with a Reactive Transformer (fresh or from a checkpoint), offline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, help="a model directory (save_pretrained + tokenizer)")
    parser.add_argument("--preset", default="nano", help="model preset for a freshly built model")
    parser.add_argument("--scripted", action="store_true", help="replay an embedded episode, no typing")
    parser.add_argument("--turns", type=int, default=4, help="follow-up questions in the scripted episode")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run_demo)


def load_model_and_tokenizer(checkpoint: Path | None, preset: str, seed: int):
    """A checkpoint directory's model and tokenizer, or a freshly built preset with the default tokenizer."""
    import torch

    from rxmrl.model import ReactiveTransformer, get_preset
    from rxmrl.data import default_tokenizer

    if checkpoint is not None:
        from rxmrl.model.folder import folder_tokenizer
        from rxmrl.model.rxt import load_rxt

        model = load_rxt(checkpoint, role="--checkpoint").eval()
        return model, folder_tokenizer(checkpoint, model.config.vocab_size, default=default_tokenizer), False
    tokenizer = default_tokenizer()
    torch.manual_seed(seed)
    model = ReactiveTransformer(get_preset(preset, vocab_size=tokenizer.vocab_size)).eval()
    return model, tokenizer, True


def converse(model, tokenizer, queries: Iterator[str], sampling, max_new_tokens: int, seed: int,
             out=None) -> list[Turn]:
    """Answer each query from memory, streaming tokens, then update memory; returns the timed turns."""
    import torch

    out = out if out is not None else sys.stdout
    from rxmrl.model import MEMORY_UPDATE_STARTED, MEMORY_UPDATED

    generator = torch.Generator().manual_seed(seed)
    turns: list[Turn] = []
    for query in queries:
        print(f"you> {query}", file=out)
        query_ids = tokenizer.encode_query(query)
        if len(query_ids) + max_new_tokens > model.config.max_seq_len:
            print(f"note: this query is {len(query_ids)} tokens; with {max_new_tokens} answer tokens that is over "
                  f"the model's limit of {model.config.max_seq_len}: not answered", file=sys.stderr, flush=True)
            continue
        print("rxt> ", end="", file=out, flush=True)
        answer_ids: list[int] = []
        shown = ""
        start = time.perf_counter()
        answered = start
        for token in model.interact(query_ids, max_new_tokens, sampling, generator):
            if token == MEMORY_UPDATE_STARTED:
                answered = time.perf_counter()
                print("  [memory update…]", end="", file=out, flush=True)
            elif token == MEMORY_UPDATED:
                print(" [memory updated]", file=out)
            else:
                answer_ids.append(token)
                text = tokenizer.decode(answer_ids)
                print(text[len(shown):], end="", file=out, flush=True)
                shown = text
        done = time.perf_counter()
        turns.append(Turn(query, shown, answered - start, done - answered))
    return turns


def _typed_queries() -> Iterator[str]:
    while True:
        try:
            line = input()
        except EOFError:
            return
        if not line.strip():
            return
        yield line.strip()


def _piped_queries(stream) -> Iterator[str]:
    """One query per non-empty line of piped input (``echo "who is Tom?" | rxmrl demo``)."""
    for line in stream:
        if line.strip():
            yield line.strip()


def check_demo_arguments(args: argparse.Namespace) -> None:
    """Options refused in one line before the model loads."""
    import math

    from rxmrl.runtime import InputError

    if args.turns < 1 or args.max_new_tokens < 1:
        raise InputError(f"--turns {args.turns}, --max-new-tokens {args.max_new_tokens}: expected counts >= 1")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise InputError(f"--temperature {args.temperature}: expected a finite number >= 0 (0: greedy)")
    if not 0 < args.top_p <= 1:
        raise InputError(f"--top-p {args.top_p}: expected a share in (0, 1]")


def run_demo(args: argparse.Namespace) -> int:
    from rxmrl.model import SamplingConfig

    check_demo_arguments(args)
    model, tokenizer, fresh = load_model_and_tokenizer(args.checkpoint, args.preset, args.seed)
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p) if args.temperature > 0 \
        else SamplingConfig()
    params = sum(p.numel() for p in model.parameters())
    print(f"Reactive Transformer: {params / 1e6:.2f}M parameters, STM {tuple(model.initial_stm(1).shape[1:])}")
    if fresh:
        print(f"(a freshly built '{args.preset}' model: untrained, so its answers are noise; "
              "train one with `rxmrl train supervised` and pass --checkpoint)")
    model.reset_stm(1)
    try:
        turns = _conversation(args, model, tokenizer, sampling)
    except KeyboardInterrupt:  # Ctrl-C ends the chat like an empty line (the turns so far are not shown)
        print("\n(interrupted)", file=sys.stderr)
        return 0
    if turns:
        print("\nturn  answer ms  memory-update ms")
        for index, turn in enumerate(turns, 1):
            print(f"{index:>4}  {turn.answer_seconds * 1e3:>9.1f}  {turn.memory_seconds * 1e3:>16.1f}")
    return 0


def _conversation(args: argparse.Namespace, model, tokenizer, sampling) -> list[Turn]:
    """The scripted episode, the piped queries or the typed chat; the turns it played."""
    from rxmrl.data import load_curriculum

    if args.scripted:
        episode = load_curriculum(steps=max(args.turns, 1), split="validation", num_episodes=1)[0]
        print(f"\nsaved interaction (written into memory first):\n  Q: {episode.query}\n  A: {episode.answer}")
        model.init_stm_state(tokenizer.encode_query(episode.query), tokenizer.encode(episode.answer))
        follow_ups = episode.interactions[: args.turns]
        turns = converse(model, tokenizer, iter(f.query for f in follow_ups), sampling, args.max_new_tokens,
                         args.seed)
        for follow_up, turn in zip(follow_ups, turns):
            print(f"reference for '{turn.query}': {follow_up.answer}")
        return turns
    if not sys.stdin.isatty():
        return converse(model, tokenizer, _piped_queries(sys.stdin), sampling, args.max_new_tokens, args.seed)
    print("Type a message; an empty line ends the conversation.")
    return converse(model, tokenizer, _typed_queries(), sampling, args.max_new_tokens, args.seed)
