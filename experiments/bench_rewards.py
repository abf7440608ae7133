"""Benchmark of the memory-retention rewards on this machine's CPU (or CUDA with --device cuda).

Prints, in one run:
1. token-id BLEU (ours, batched) vs NLTK ``sentence_bleu`` in a Python loop, batch 64/128/256 x 256 tokens;
2. the composite reward per batch (256 x 256 tokens) with each similarity backend, next to the reference
   framework's default reward (NLTK BLEU-2 per sample + token-embedding cosines), and the time per call of
   the ``memory`` preset (memory tokens) over ``default``'s.

    python experiments/bench_rewards.py [--quick] [--device cpu|cuda] [--threads N] [--repeats N] [--skip-encoder]

Timings are medians over repeats after a warm-up call, as wall-clock and as CPU (process) time; on a shared
machine the wall clock varies with the load (compare ratios within one run, or the CPU columns), and
``--threads 1`` is steadier there (two OpenMP threads stall whenever one of them is descheduled). The
sentence encoder is timed once per call after a warm-up call that fills its reference/saved cache, so the
figure is what each later step of an episode costs: embedding the generated answers only.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F


def median_ms(fn: Callable[[], object], repeats: int, sync: bool = False) -> tuple[float, float]:
    """Median wall-clock and median CPU (process) time of ``fn`` in ms, after one warm-up call.

    On a shared machine the wall clock also counts time the process waits for a core; the CPU time does
    not, so ratios of CPU times stay comparable between runs under different loads.
    """
    fn()  # warm-up: allocator, lazy initialisation (and, for the sentence encoder, the target cache)
    wall, cpu = [], []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def nltk_bleu_loop(hyps: list[list[int]], refs: list[list[int]], weights, smoothing) -> list[float]:
    from nltk.translate.bleu_score import sentence_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [sentence_bleu([r], h, weights=weights, smoothing_function=smoothing) for h, r in zip(hyps, refs)]


def reference_framework_reward(gen, ref, sav, mean, embedding, smoothing) -> torch.Tensor:
    """The reference framework's default: NLTK BLEU-2 per sample + mean-pooled embedding cosines."""
    bleu = torch.tensor(nltk_bleu_loop(gen.tolist(), ref.tolist(), (0.5, 0.5), smoothing))
    e_gen, e_ref, e_sav = (F.embedding(x, embedding).mean(dim=1) for x in (gen, ref, sav))
    cos = lambda a, b: F.cosine_similarity(a, b, dim=-1).clamp_min(0)  # noqa: E731
    cosine = 0.5 * cos(e_gen, e_sav) + 0.3 * cos(e_gen, e_ref) + 0.2 * cos(e_gen, mean)
    return 10 * (0.5 * bleu + 0.5 * cosine)


def fmt(times: tuple[float, float]) -> str:
    """``wall | cpu`` table cells."""
    return f"{times[0]:.1f} | {times[1]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sentence-encoder batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--vocab", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=128, help="token-embedding width of the policy")
    parser.add_argument("--encoder-batch", type=int, default=None, help="sentence-encoder batch (256; 32 --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per figure (10; 3 with --quick)")
    parser.add_argument("--skip-encoder", action="store_true", help="leave out the sentence-encoder row (slow)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from nltk.translate.bleu_score import SmoothingFunction

    from rxmrl.rewards import (
        SentenceEncoderSimilarity, TokenEmbeddingSimilarity, memory_target, preset_reward, token_bleu,
    )

    device, sync = torch.device(args.device), args.device.startswith("cuda")
    repeats = args.repeats or (3 if args.quick else 10)
    method4 = SmoothingFunction().method4
    gen_cpu = torch.Generator().manual_seed(0)
    seq = 256
    print(f"device={device} threads={torch.get_num_threads()} vocab={args.vocab} dim={args.dim} repeats={repeats}")

    print("\n## Token-id BLEU-2 (method4), batch x 256 tokens: ours vs NLTK sentence_bleu loop")
    print("| batch | ours ms | NLTK ms | speed-up | ours CPU ms | NLTK CPU ms | CPU speed-up | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for batch in (64, 128, 256):
        hyp = torch.randint(7, args.vocab, (batch, seq), generator=gen_cpu)
        ref = torch.randint(7, args.vocab, (batch, seq), generator=gen_cpu)
        ref[:, ::3] = hyp[:, ::3]  # some overlap so higher orders match
        hyp_d, ref_d = hyp.to(device), ref.to(device)
        ours = median_ms(lambda: token_bleu(hyp_d, ref_d, weights=(0.5, 0.5), smoothing="method4"), repeats, sync)
        hyps, refs = hyp.tolist(), ref.tolist()
        nltk_ms = median_ms(lambda: nltk_bleu_loop(hyps, refs, (0.5, 0.5), method4), max(1, repeats // 3))
        diff = (token_bleu(hyp, ref, weights=(0.5, 0.5), smoothing="method4")
                - torch.tensor(nltk_bleu_loop(hyps, refs, (0.5, 0.5), method4), dtype=torch.float64)).abs().max()  # fmt: skip
        (ours, ours_cpu), (nltk_ms, nltk_cpu) = ours, nltk_ms
        print(
            f"| {batch} | {ours:.1f} | {nltk_ms:.1f} | {nltk_ms / ours:.0f}x | {ours_cpu:.1f} | {nltk_cpu:.1f} | "
            f"{nltk_cpu / ours_cpu:.0f}x | {float(diff):.1e} |"
        )

    batch = 256
    gen, ref, sav = (torch.randint(7, args.vocab, (batch, seq), generator=gen_cpu) for _ in range(3))
    ref[:, ::2] = gen[:, ::2]
    weight = torch.randn(args.vocab, args.dim, generator=gen_cpu)
    mean = torch.randn(batch, args.dim, generator=gen_cpu)
    print(f"\n## Composite reward per call, batch {batch} x {seq} tokens (generated, reference, saved)")
    print("| reward | backend | ms per call | CPU ms per call |")
    print("|---|---|---:|---:|")
    baseline = median_ms(lambda: reference_framework_reward(gen, ref, sav, mean, weight, method4), max(1, repeats // 3))
    print(f"| reference framework default (NLTK BLEU-2 loop + cosines) | token embedding | {fmt(baseline)} |")
    token_backend = TokenEmbeddingSimilarity(weight, device=device)
    g, r, s, m = gen.to(device), ref.to(device), sav.to(device), mean.to(device)
    words = [f"w{i}" for i in range(args.vocab)]
    decode = lambda ids: " ".join(map(words.__getitem__, ids))  # noqa: E731  # C-speed, as a tokenizer's decode
    # memory tokens of each row: reference words the saved interaction holds (built once per episode in use)
    targets = [memory_target(decode(ref_row), "", [decode(sav_row)]) for ref_row, sav_row in zip(ref.tolist(),
                                                                                                  sav.tolist())]
    times = {}
    for preset in ("rxlm", "default", "rxnn-len", "memory"):
        reward = preset_reward(preset, token_backend, decode=decode)
        times[preset] = median_ms(lambda: reward(g, r, s, running_mean=m, memory_targets=targets), repeats, sync)
        print(f"| ours `{preset}` | frozen token embedding | {fmt(times[preset])} |")
    print(f"\n`memory` / `default` time per call, frozen token embedding: wall "
          f"{times['memory'][0] / times['default'][0]:.2f}x, CPU {times['memory'][1] / times['default'][1]:.2f}x")

    if args.skip_encoder:
        return
    enc_batch = args.encoder_batch or (32 if args.quick else batch)
    rows = slice(0, enc_batch)
    args_se = (gen[rows].to(device), ref[rows].to(device), sav[rows].to(device))
    encoder_times = {}
    for preset in ("default", "memory"):
        sentence = preset_reward(preset, SentenceEncoderSimilarity(decode=decode, device=str(device)), decode=decode)
        start = time.perf_counter()
        e_mean = sentence.embed_ids(gen[rows].to(device), cache=False)  # also loads the encoder
        load_s = time.perf_counter() - start
        encoder_times[preset] = median_ms(lambda: sentence(*args_se, running_mean=e_mean,
                                                           memory_targets=targets[rows]),
                                          1 if not sync else repeats, sync)
        print(f"| ours `{preset}`, batch {enc_batch} (targets cached) | sentence encoder all-MiniLM-L6-v2 | "
              f"{fmt(encoder_times[preset])} |")
    print(f"\n`memory` / `default` time per call, sentence encoder: wall "
          f"{encoder_times['memory'][0] / encoder_times['default'][0]:.2f}x, CPU "
          f"{encoder_times['memory'][1] / encoder_times['default'][1]:.2f}x")
    print(f"(sentence encoder first call incl. load: {load_s:.1f} s)")


if __name__ == "__main__":
    main()
