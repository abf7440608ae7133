"""Token rows for the four stages, their padding, and BERT-style masking.

Every stage pre-tokenises its data once into plain id lists (cheap to index, pickle and shard), and pads
per batch to the batch's longest row (dynamic padding: short interactions do not pay for long stories).

A *row* is ``(ids, targets)``: ``targets[i] > 0`` where token ``i`` is a target of the decoder's
autoregressive loss (token ``i`` is predicted from tokens ``< i``), and the value is the token's weight in
that loss (1 everywhere, unless a stage weights some tokens up: stage 4's fact tokens). An *episode row* is
the list of the episode's interaction rows (saved interaction first, then the follow-ups).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from rxmrl.data.schema import Episode, Interaction
from rxmrl.special_tokens import BOS_ID, EOS_ID, MASK_ID, PAD_ID, SPECIAL_TOKEN_IDS
from rxmrl.tokenizer import RxTokenizer

Row = tuple[list[int], list[float]]  # (ids, target weights)


def story_rows(tokenizer: RxTokenizer, texts: Sequence[str], max_length: int) -> list[Row]:
    """``[BOS] text [EOS]`` cut to ``max_length``; every token after ``[BOS]`` is a target."""
    rows = []
    for ids in tokenizer.encode_batch(texts):
        ids = [BOS_ID, *ids[: max_length - 2], EOS_ID]
        rows.append((ids, [0] + [1] * (len(ids) - 1)))
    return rows


def interaction_rows(tokenizer: RxTokenizer, interactions: Sequence[Interaction], max_length: int,
                     answer_only: bool) -> list[Row]:
    """``[BOS][Q] q [A] a [EOS]`` cut to ``max_length``; targets: answer tokens and ``[EOS]`` (or all).

    ``[EOS]`` is always a target, so the decoder learns to stop (the answer tail is cut before it is).
    """
    batch = tokenizer.encode_interactions([i.query for i in interactions], [i.answer for i in interactions],
                                          max_length)
    rows = []
    for ids, mask, answer in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(),
                                 batch.answer_mask.tolist(), strict=True):
        length = sum(mask)
        ids = ids[:length]
        if ids[-1] != EOS_ID:  # truncated: keep the end marker so stopping is still learned
            ids[-1] = EOS_ID
        targets = answer[:length] if answer_only else [0] + [1] * (length - 1)
        targets[-1] = 1
        rows.append((ids, targets))
    return rows


def episode_rows(tokenizer: RxTokenizer, episodes: Sequence[Episode], max_length: int) -> list[list[Row]]:
    """Each episode as its interaction rows (saved interaction, then follow-ups), answer-only targets."""
    counts = {e.num_follow_ups for e in episodes}
    if len(counts) > 1:
        raise ValueError(f"episodes have {sorted(counts)} follow-ups; a batch steps episodes in lockstep, "
                         "so all need the same number (use one steps-N config)")
    flat = [i for e in episodes for i in e.all_interactions()]
    rows = interaction_rows(tokenizer, flat, max_length, answer_only=True)
    per_episode = len(flat) // max(len(episodes), 1)
    return [rows[i:i + per_episode] for i in range(0, len(rows), per_episode)]


def pad_rows(rows: Sequence[Row]) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` (bool), ``target_mask`` (bool) and ``target_weight``
    (float, 0 off target), each ``[B, T]``."""
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    target_weight = torch.zeros((len(rows), length))
    attention_mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for b, (ids, targets) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        target_weight[b, : len(ids)] = torch.tensor(targets, dtype=torch.float)
        attention_mask[b, : len(ids)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "target_mask": target_weight > 0,
            "target_weight": target_weight}


def pad_episodes(episodes: Sequence[list[Row]]) -> dict[str, Tensor]:
    """``B`` episodes of ``N + 1`` interactions -> tensors ``[N + 1, B, T]`` (one pad length for all).

    Interaction ``t`` of every episode sits in ``[t]``, so a stage steps the batch in lockstep; each step
    trims its own padding columns (:func:`trim`).
    """
    steps = {len(e) for e in episodes}
    if len(steps) != 1:
        raise ValueError(f"episodes in one batch have {sorted(steps)} interactions, expected one count")
    per_step = [pad_rows([e[t] for e in episodes]) for t in range(steps.pop())]
    length = max(p["input_ids"].shape[1] for p in per_step)
    out = {}
    for key in per_step[0]:
        padded = [torch.nn.functional.pad(p[key], (0, length - p[key].shape[1])) for p in per_step]
        out[key] = torch.stack(padded)  # [N + 1, B, T]
    return out


def trim(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the all-padding columns at the right of ``[B, T]`` tensors (after lockstep padding)."""
    length = int(batch["attention_mask"].sum(1).max())
    return {key: value[:, :length] for key, value in batch.items()}


def mask_tokens(ids: Tensor, attention_mask: Tensor, mask_prob: float, vocab_size: int,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT-style corruption for MLM: ``(masked_ids, selected)``, both ``[B, T]``.

    Each real, non-special token is selected with probability ``mask_prob``; a selected token becomes
    ``[MASK]`` (80%), a random ordinary token (10%) or stays as it is (10%), so the encoder cannot learn
    that only ``[MASK]`` positions need a prediction. The MLM loss is taken on ``selected`` positions.
    """
    special = torch.tensor(sorted(SPECIAL_TOKEN_IDS), device=ids.device)
    candidates = attention_mask.bool() & ~torch.isin(ids, special)
    draw = torch.rand(ids.shape, generator=generator, device=ids.device)
    selected = candidates & (draw < mask_prob)
    action = torch.rand(ids.shape, generator=generator, device=ids.device)
    first_ordinary = max(SPECIAL_TOKEN_IDS) + 1
    random_tokens = torch.randint(first_ordinary, vocab_size, ids.shape, generator=generator, device=ids.device)
    masked = torch.where(selected & (action < 0.8), torch.full_like(ids, MASK_ID), ids)
    masked = torch.where(selected & (action >= 0.8) & (action < 0.9), random_tokens, masked)
    return masked, selected


def masked_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted mean cross-entropy, and token accuracy over positions with a weight > 0 (both 0 if none).

    ``logits: [B, T, V]``, ``targets``/``weights``: ``[B, T]`` (``weights`` bool or float).
    """
    weights = weights.to(torch.float32)
    losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    loss = (losses * weights.flatten()).sum() / weights.sum().clamp(min=1e-6)
    on_target = (weights > 0).to(torch.float32)
    correct = (logits.argmax(-1) == targets).to(torch.float32)
    accuracy = (correct * on_target).sum() / on_target.sum().clamp(min=1.0)
    return loss, accuracy.detach()


def next_token_loss(logits: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Autoregressive loss: position ``i`` predicts token ``i + 1``, weighted by ``target_weight[i + 1]``."""
    return masked_cross_entropy(logits[:, :-1], batch["input_ids"][:, 1:],
                                batch["target_weight"][:, 1:] * batch["attention_mask"][:, 1:])


def projected_next_token_loss(hidden: Tensor, head: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """:func:`next_token_loss` from final hidden states ``[B, T, D]``, projecting only the target positions.

    A stage-4 batch's targets are the answer tokens of right-padded rows: projecting every prompt and padding
    position onto the vocabulary (forward, the log-softmax, its backward and the head's gradient) was most of
    a step. The loss is the same weighted mean over the same positions, summed in another order.
    """
    weights = batch["target_weight"][:, 1:] * batch["attention_mask"][:, 1:]  # [B, T-1]
    chosen = weights > 0
    logits = head(hidden[:, :-1][chosen])  # [M, V], M target positions
    return masked_cross_entropy(logits[None], batch["input_ids"][:, 1:][chosen][None], weights[chosen][None])


__all__ = ["Row", "interaction_rows", "episode_rows", "mask_tokens", "masked_cross_entropy", "next_token_loss",
           "projected_next_token_loss",
           "pad_episodes", "pad_rows", "story_rows", "trim"]
