"""Does memory matter? Follow-up answer loss with the accumulated STM versus a freshly reset one.

For validation episodes ``I_0 .. I_N`` the decoder is scored (teacher forcing) on the answer tokens and
``[EOS]`` of every follow-up ``I_t`` twice:

* **with memory** -- reading ``STM_t``, into which ``I_0 .. I_{t-1}`` were written one by one;
* **reset memory** -- reading a fresh initial STM, as at the start of a conversation.

Follow-up answers of the curriculum repeat facts from earlier interactions ("What colour was Lily's
drum?" -> "Lily's drum was brown."), which a decoder can only get right from memory; the rest of an answer
restates the question or tells something new, which memory cannot help with. So the probe reports both
all answer tokens and *fact tokens* (the tokens of the episode's ``facts`` phrases inside the answer):
``fact_loss_reset_memory − fact_loss_with_memory`` is what the memory system carries. Both passes use the
same fresh STM draws (a seeded generator), so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rxmrl.data.schema import Episode
from rxmrl.evaluation.bootstrap import bootstrap_interval
from rxmrl.model import ReactiveTransformer
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.stages.batching import episode_rows, pad_episodes
from rxmrl.training.stages.facts import fact_token_masks
from rxmrl.training.stages.memory_aware import follow_up_logits


def _padded(rows: list[list[int]], width: int, device: torch.device) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=torch.bool, device=device)
    for b, row in enumerate(rows):
        row = row[:width]
        out[b, : len(row)] = torch.tensor(row, dtype=torch.bool, device=device)
    return out


@torch.no_grad()
def memory_matters(model: ReactiveTransformer, tokenizer: RxTokenizer, episodes: Sequence[Episode], *,
                   batch_size: int = 32, max_length: int = 128, seed: int = 0) -> dict[str, float]:
    """Token-averaged follow-up answer loss and accuracy with accumulated vs reset memory.

    Returns ``loss_/acc_with_memory``, ``loss_/acc_reset_memory`` (all answer tokens + ``[EOS]``), the same
    four for fact tokens (``fact_loss_with_memory`` ...; NaN when the episodes have no facts), ``loss_gap``
    and ``fact_loss_gap`` (reset − with; > 0 when memory helps), their 95% bootstrap intervals over episodes
    (``loss_gap_low``/``_high``, ``fact_loss_gap_low``/``_high``) and the token counts.

    The intervals resample episodes (their follow-ups share one memory) and hold each episode's token count
    fixed: the gap is ``Σ_e (nll_reset_e − nll_with_e) / tokens``, a mean over episodes of
    ``(nll_reset_e − nll_with_e)·E / tokens``, which is what :func:`bootstrap_interval` resamples.
    """
    if not episodes:
        raise ValueError("memory_matters needs at least one episode")
    was_training = model.training
    model.eval()
    rows = episode_rows(tokenizer, episodes, max_length)
    facts = [fact_token_masks(tokenizer, episode, max_length) for episode in episodes]
    # per episode, summed over its follow-ups: negative log-likelihood and correct tokens, per kind and mode
    episode_sums = {(kind, what, mode): np.zeros(len(rows)) for kind in ("all", "fact")
                    for what in ("nll", "correct") for mode in ("with", "reset")}
    counts = {"all": 0, "fact": 0}
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(model.device) for k, v in pad_episodes(rows[start:start + batch_size]).items()}
        batch_facts = facts[start:start + batch_size]
        span = slice(start, start + len(batch_facts))
        for mode, reset in (("with", False), ("reset", True)):
            generator = torch.Generator(model.device).manual_seed(seed + start)
            for t, (logits, _, current) in enumerate(follow_up_logits(model, batch, reset, generator), start=1):
                targets = current["input_ids"][:, 1:]
                answer = current["target_mask"][:, 1:] & current["attention_mask"][:, 1:]  # [B, T-1]
                fact = _padded([f[t] for f in batch_facts], targets.shape[1] + 1, model.device)[:, 1:] & answer
                nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                      reduction="none").view_as(targets)
                correct = logits[:, :-1].argmax(-1) == targets
                for kind, weights in (("all", answer), ("fact", fact)):
                    for what, values in (("nll", nll), ("correct", correct)):
                        episode_sums[kind, what, mode][span] += (values * weights).sum(1).double().cpu().numpy()
                    if not reset:
                        counts[kind] += int(weights.sum())
    model.train(was_training)
    result: dict[str, float] = {}
    for kind, prefix in (("all", ""), ("fact", "fact_")):
        n = counts[kind]
        for mode, label in (("with", "with_memory"), ("reset", "reset_memory")):
            for what, name in (("nll", "loss"), ("correct", "acc")):
                total = float(episode_sums[kind, what, mode].sum())
                result[f"{prefix}{name}_{label}"] = total / n if n else float("nan")
        result[f"{prefix}loss_gap"] = result[f"{prefix}loss_reset_memory"] - result[f"{prefix}loss_with_memory"]
        gaps = episode_sums[kind, "nll", "reset"] - episode_sums[kind, "nll", "with"]
        scaled = gaps * len(rows) / n if n else np.full(len(rows), np.nan)
        result[f"{prefix}loss_gap_low"], result[f"{prefix}loss_gap_high"] = bootstrap_interval(scaled, seed=seed)
    result["tokens"], result["fact_tokens"] = float(counts["all"]), float(counts["fact"])
    return result
