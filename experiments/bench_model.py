"""Benchmark: what the caches buy, and why a fixed-size memory keeps turns flat.

1. Generation throughput (tokens/s) with the self-attention KV cache + precomputed memory keys/values,
   versus recomputing the whole sequence (and the memory projections) at every step.
2. Per-turn latency over a conversation: RxT answers from the query and its STM, then writes the
   interaction into memory (encoder + memory attention), so every turn costs the same. A stateless
   decoder of the same size (the same decoder, reading one empty memory slot) must re-read the whole
   history every turn, so its turns grow with the conversation.

Weights are random and ``[EOS]`` is suppressed so every answer has exactly the requested length. Ratios
are measured within one run. Run: ``python experiments/bench_model.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rxmrl.model import ReactiveTransformer, RxTConfig, interaction_ids
from rxmrl.special_tokens import BOS_ID, EOS_ID, QUERY_ID

BENCH_CONFIG = RxTConfig(
    vocab_size=8192, dim=256, num_layers=4, num_heads=16, query_heads=8, kv_heads=8, num_experts=8,
    experts_per_token=2, expert_dim=384, encoder_ff_dim=768, stm_slots=128,
)


def ban_eos(model: ReactiveTransformer) -> None:
    """Make every answer run to ``max_new_tokens`` so turns have equal lengths."""

    def hook(module, inputs, logits):
        logits = logits.clone()
        logits[..., EOS_ID] = float("-inf")
        return logits

    model.decoder.lm_head.register_forward_hook(hook)


def random_query(length: int, vocab: int, generator: torch.Generator) -> list[int]:
    return [BOS_ID, QUERY_ID] + torch.randint(7, vocab, (length - 2,), generator=generator).tolist()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_throughput(model: ReactiveTransformer, new_tokens: int, batch: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    queries = [random_query(32, model.config.vocab_size, generator) for _ in range(batch)]
    stm = model.initial_stm(batch, generator)
    result = {}
    for use_cache in (True, False):
        seconds = min(
            timed(lambda: model.generate(queries, stm, new_tokens, use_cache=use_cache))
            for _ in range(repeats)
        )
        result["cached" if use_cache else "uncached"] = batch * new_tokens / seconds
    return result


def bench_turns(
    model: ReactiveTransformer, turns: int, query_len: int, answer_len: int, batch: int, repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds per turn of ``batch`` conversations: RxT (answer + memory update) vs stateless.

    The stateless decoder's prompt at turn ``t`` is every earlier ``query [A] answer [EOS]`` followed by
    the current query; RxT's prompt is the current query alone.
    """
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    conversations = [[random_query(query_len, vocab, generator) for _ in range(batch)]
                     for _ in range(turns)]
    empty_memory = torch.zeros(batch, model.config.num_layers, 1, model.config.dim)
    rxt, stateless = [[] for _ in range(turns)], [[] for _ in range(turns)]
    for _ in range(repeats):
        stm = model.initial_stm(batch, generator)
        histories: list[list[int]] = [[] for _ in range(batch)]
        for turn, queries in enumerate(conversations):
            start = time.perf_counter()
            out = model.generate(queries, stm, answer_len)
            stm = model.update_memory(stm, queries, out.answers())
            rxt[turn].append(time.perf_counter() - start)

            start = time.perf_counter()
            prompts = [history + query for history, query in zip(histories, queries, strict=True)]
            out = model.generate(prompts, empty_memory, answer_len)
            stateless[turn].append(time.perf_counter() - start)
            for history, query, answer in zip(histories, queries, out.answers(), strict=True):
                history += interaction_ids(query, answer)
    return [min(t) for t in rxt], [min(t) for t in stateless]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--batch", type=int, default=8, help="conversations served at once")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is steadiest when other jobs share the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BENCH_CONFIG.replace(num_layers=2, dim=128, num_heads=8, query_heads=4, kv_heads=4) \
        if args.quick else BENCH_CONFIG
    model = ReactiveTransformer(config).eval()
    ban_eos(model)
    new_tokens, turns = (32, 4) if args.quick else (128, 16)
    query_len, answer_len = (16, 16) if args.quick else (32, 64)
    repeats = 1 if args.quick else 2
    print(f"config: dim {config.dim}, layers {config.num_layers}, experts "
          f"{config.experts_per_token}/{config.num_experts}, STM {config.stm_slots} slots, "
          f"threads {args.threads}")

    with torch.inference_mode():
        model.generate([[BOS_ID, QUERY_ID, 9]], model.initial_stm(1), 4)  # warm-up
        speed = bench_throughput(model, new_tokens, batch=args.batch, repeats=repeats)
        print(f"\ngeneration, batch {args.batch}, prompt 32, {new_tokens} new tokens")
        print(f"  with caches    {speed['cached']:>9.1f} tokens/s")
        print(f"  without caches {speed['uncached']:>9.1f} tokens/s")
        print(f"  speed-up       {speed['cached'] / speed['uncached']:>9.2f}x")

        rxt, stateless = bench_turns(model, turns, query_len, answer_len, args.batch, repeats)
    print(f"\nper-turn latency (ms) of {args.batch} conversations, query {query_len} + answer "
          f"{answer_len} tokens per turn")
    print(f"{'turn':>6}{'RxT':>10}{'stateless':>12}")
    for turn in range(turns):
        print(f"{turn + 1:>6}{rxt[turn] * 1e3:>10.1f}{stateless[turn] * 1e3:>12.1f}")
    print(f"turn-{turns}/turn-1: RxT {rxt[-1] / rxt[0]:.2f}, stateless {stateless[-1] / stateless[0]:.2f}"
          f" (RxT median {statistics.median(rxt) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
