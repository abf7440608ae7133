"""Per-turn latency and compute as a conversation grows: stateless LLM vs Reactive Transformer.

Both models process *the same tokens* each turn -- the turn's prompt, then the reference answer fed one
token at a time through the KV cache (forced decoding) -- so the comparison measures the architectures,
not how long their (possibly untrained) answers happen to be. Per turn ``k`` (interaction ``k`` of the
conversation, 0 = the first):

* stateless: prompt = ``[BOS]`` + interactions ``0..k-1`` + ``[Q] q_k [A]`` (grows with ``k``),
* RxT: prompt = ``[BOS][Q] q_k [A]`` read against the fixed-size STM (constant); the memory update after
  the answer runs asynchronously in RxT (the user does not wait for it) and is timed on its own.

Compute is the usual forward-pass estimate (Kaplan et al., 2020) per processed token,

    FLOPs/token ~= 2 * N + 2 * n_layers * n_keys * d_attn,

with ``N`` the non-embedding parameters a token uses (active experts only), ``n_keys`` the key positions
it attends to (its causal context; for RxT also the ``stm_slots`` of memory cross-attention) and
``d_attn`` the attention width (SQA: query heads x head size). Summed over a turn's tokens this is linear
in the history for the stateless model (quadratic over the conversation) and flat for RxT.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rxmrl.baseline.data import completion_ids, fit_history, query_ids, turn_ids
from rxmrl.data.schema import Interaction

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer


@dataclass(frozen=True)
class LatencyRow:
    turn: int  # interaction index in the conversation (0 = first)
    answer_tokens: int  # answer tokens both models decode this turn (a [EOS])
    stateless_prompt_tokens: int
    rxt_prompt_tokens: int
    stateless_seconds: float  # prompt + answer decoding (median of repeats)
    rxt_seconds: float  # prompt + answer decoding from STM (median of repeats)
    rxt_memory_seconds: float  # the asynchronous memory update after the answer
    stateless_gflops: float  # estimated forward GFLOPs of the turn
    rxt_gflops: float  # ... decoder only (the memory update is not in the user's wait)


def _median_seconds(runs: Sequence[Callable[[], None]], repeats: int) -> list[float]:
    """Median wall time of each of ``runs``, timed in turns (a, b, a, b, ...) so that a slow spell of a
    noisy machine lands on both sides of a comparison, not on whichever was timed during it."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, out in zip(runs, times, strict=True):
            started = time.perf_counter()
            run()
            out.append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def _causal_keys(prompt: int, answer: int, extra_keys: int = 0) -> int:
    """Key positions attended by a prompt of ``prompt`` tokens and ``answer`` decoded tokens (causal)."""
    tokens = prompt + answer - 1  # the last answer token ([EOS]) is never fed back
    return tokens * (tokens + 1) // 2 + extra_keys * tokens


@torch.no_grad()
def stateless_turn(model: PreTrainedModel, prompt_ids: list[int], answer_ids: list[int]) -> None:
    """Prompt prefill, then the answer one token at a time through Hugging Face's KV cache."""
    device = next(model.parameters()).device
    output = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)  # [1, P]
    cache = output.cache  # transformers 5: `cache` (the `past_key_values` name is deprecated)
    for token in answer_ids[:-1]:
        output = model(input_ids=torch.tensor([[token]], device=device), cache=cache, use_cache=True)
        cache = output.cache


@torch.no_grad()
def rxt_turn(model: ReactiveTransformer, prompt_ids: list[int], answer_ids: list[int], stm: torch.Tensor) -> None:
    """Query prefill against the STM, then the answer one token at a time through the decoder cache."""
    device = model.device
    cache = model.decoder.new_cache(stm, len(prompt_ids) + len(answer_ids))
    ids = torch.tensor([prompt_ids], device=device)  # [1, Q]
    model.decoder(ids, attention_mask=torch.ones_like(ids, dtype=torch.bool), cache=cache)
    for token in answer_ids[:-1]:
        step = torch.tensor([[token]], device=device)  # [1, 1]
        model.decoder(step, attention_mask=torch.ones_like(step, dtype=torch.bool), cache=cache)


def _stateless_flops_per(model: PreTrainedModel) -> tuple[int, int]:
    """(non-embedding parameters, 2 * layers * attention width) of a Hugging Face decoder."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()
    head = 0 if config.tie_word_embeddings else model.get_output_embeddings().weight.numel()
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding - head
    width = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    return non_embedding, 2 * config.num_hidden_layers * width


def _rxt_flops_per(model: ReactiveTransformer) -> tuple[int, int]:
    """(active non-embedding decoder parameters, 2 * layers * SQA attention width) of an RxT decoder."""
    from rxmrl.model import count_parameters

    config = model.config
    embedding = model.embedding.weight.numel()
    active = count_parameters(model)["decoder_active"] - embedding
    if not config.tie_lm_head:
        active -= config.vocab_size * config.dim
    return active, 2 * config.num_layers * config.query_heads * config.head_dim


def measure_latency(stateless: PreTrainedModel, rxt: ReactiveTransformer, tokenizer: RxTokenizer,
                    conversation: Sequence[Interaction], *, repeats: int = 3,
                    context_length: int | None = None) -> list[LatencyRow]:
    """One :class:`LatencyRow` per interaction of ``conversation`` (see the module docstring).

    ``context_length`` caps the stateless prompt + answer (left truncation, as the agent does); default:
    the model's ``max_position_embeddings``. The RxT STM is updated with each interaction, as in use.
    """
    if not conversation:
        raise ValueError("conversation is empty: expected at least one interaction")
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: expected >= 1")
    stateless.eval()
    rxt.eval()
    context_length = context_length or stateless.config.max_position_embeddings
    s_params, s_attn = _stateless_flops_per(stateless)
    r_params, r_attn = _rxt_flops_per(rxt)
    slots = rxt.config.stm_slots
    stm = rxt.initial_stm(1, torch.Generator(device=rxt.device).manual_seed(0))
    warm_up = tokenizer.encode_prompt(conversation[0].query), completion_ids(tokenizer, conversation[0].answer)
    stateless_turn(stateless, *warm_up)  # first calls pay one-off allocation and dispatch costs
    rxt_turn(rxt, *warm_up, stm)
    history: list[list[int]] = []
    rows = []
    for turn, interaction in enumerate(conversation):
        answer = completion_ids(tokenizer, interaction.answer)
        s_prompt = fit_history(history, query_ids(tokenizer, interaction.query), context_length - len(answer)).ids
        r_query = tokenizer.encode_query(interaction.query)  # [BOS][Q] q
        r_prompt = [*r_query, *query_ids(tokenizer, "")[1:]]  # + [A]
        s_seconds, r_seconds = _median_seconds([lambda: stateless_turn(stateless, s_prompt, answer),
                                                lambda: rxt_turn(rxt, r_prompt, answer, stm)], repeats)
        started = time.perf_counter()
        with torch.no_grad():
            stm = rxt.update_memory(stm, [r_query], [answer])
        memory_seconds = time.perf_counter() - started
        s_tokens, r_tokens = len(s_prompt) + len(answer) - 1, len(r_prompt) + len(answer) - 1
        s_flops = 2 * s_params * s_tokens + s_attn * _causal_keys(len(s_prompt), len(answer))
        r_flops = 2 * r_params * r_tokens + r_attn * _causal_keys(len(r_prompt), len(answer), slots)
        rows.append(LatencyRow(turn, len(answer), len(s_prompt), len(r_prompt), s_seconds, r_seconds,
                               memory_seconds, s_flops / 1e9, r_flops / 1e9))
        history.append(turn_ids(tokenizer, interaction))
    return rows


def latency_conversation(turns: int, split: str = "validation", seed: int = 0) -> list[Interaction]:
    """``turns`` interactions of one embedded curriculum episode (the saved one, then follow-ups)."""
    from rxmrl.data import load_curriculum

    episode = load_curriculum("embedded", max(turns - 1, 1), split, num_episodes=1, seed=seed)[0]
    return episode.all_interactions()[:turns]


def format_latency_table(rows: Sequence[LatencyRow]) -> str:
    """A Markdown table of the rows (milliseconds, GFLOPs), for terminals and ``report.md``."""
    lines = ["| turn | answer tok | stateless prompt tok | RxT prompt tok | stateless ms | RxT ms "
             "| RxT memory update ms | stateless GFLOPs | RxT GFLOPs |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.turn} | {r.answer_tokens} | {r.stateless_prompt_tokens} | {r.rxt_prompt_tokens} "
                     f"| {r.stateless_seconds * 1e3:.1f} | {r.rxt_seconds * 1e3:.1f} "
                     f"| {r.rxt_memory_seconds * 1e3:.1f} | {r.stateless_gflops:.4f} | {r.rxt_gflops:.4f} |")
    return "\n".join(lines)


def plot_latency(rows: Sequence[LatencyRow], path: str | Path) -> Path:
    """A PNG of prompt tokens, ms per answer token and GFLOPs per turn, stateless vs RxT (for ``report.md``)."""
    from rxmrl.figures import pyplot, save_figure

    plt = pyplot()
    turns = [r.turn for r in rows]
    panels = (
        ("prompt tokens", [r.stateless_prompt_tokens for r in rows], [r.rxt_prompt_tokens for r in rows]),
        # per answer token: turns differ in answer length, which would otherwise dominate the curve
        ("latency per answer token (ms)", [r.stateless_seconds * 1e3 / r.answer_tokens for r in rows],
         [r.rxt_seconds * 1e3 / r.answer_tokens for r in rows]),
        ("compute per turn (GFLOPs)", [r.stateless_gflops for r in rows], [r.rxt_gflops for r in rows]),
    )
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, (title, stateless, rxt) in zip(axes, panels):
        axis.plot(turns, stateless, marker="o", label="stateless LLM")
        axis.plot(turns, rxt, marker="s", label="RxT")
        axis.set_title(title)
        axis.set_xlabel("turn")
        axis.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(figure, path)
