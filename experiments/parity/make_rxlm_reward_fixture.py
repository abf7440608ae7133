"""Records the reference framework's MRL reward (rxlm 0.3.80 ``MrlRewardModel``) on seeded token ids.

Run ONLY with the separate rxlm virtualenv (see /work/shared/RXLM-QUIRKS.md; never install rxlm into ours)::

    /work/rxlm-venv/bin/python experiments/parity/make_rxlm_reward_fixture.py [--out FILE]

(default ``--out``: ``tests/data/rxlm_reward_fixture.json``).

It imports nothing from rxmrl. It calls ``MrlRewardModel`` through its public API only: the constructor, and
``__call__(generated, reference, saved_data, prev_data=..., mode=...)`` on ``{"input_ids", "attention_mask"}``
batches, for every case (a named constructor config x one of the three modes) on the same five steps of
inputs, one fresh reward model per case and no ``reset_running_mean`` between its steps. ``prev_data`` is
None on steps 0 and 3 (so the running mean is kept across a step that does not use it) and given on the
others. ``tests/test_reward_reference_parity.py`` replays the recorded inputs through ``rxmrl.rewards.RxlmReward``.

The inputs are built to reach every branch: identical answers, copies of the saved data, empty answers and an
empty reference, one-token answers, repeated bigrams, answers with unigram but no bigram matches (where
smoothed and unsmoothed BLEU part), lengths from 0 to the full width (so normalised and raw running means
point different ways), framing ids 1 ... 2 counted like special tokens, and garbage ids in the padding of odd
rows (masked out, so they must not count).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

from rxlm.training.reward import MrlRewardMode, MrlRewardModel

VOCAB, DIM, BATCH, WIDTH, STEPS = 50, 16, 8, 20, 5
OUTSIDE = VOCAB - 1  # an id never used in references or saved data: answers with it cannot match n-grams there
PREV_GIVEN = (False, True, True, False, True)  # prev_data per step

# name -> MrlRewardModel keyword arguments (besides shared_embedding)
CONFIGS: dict[str, dict] = {
    "defaults": {},
    "rewards_scale": dict(rewards_scale=10.0),
    "tanh": dict(tanh_reward_scale=True),
    "tanh_scaled": dict(tanh_reward_scale=True, rewards_scale=3.0),
    "saved_separate": dict(bleu_with_saved_data=True, bleu_ref_weights=(0.6, 0.4),
                           bleu_saved_weights=(0.4, 0.3, 0.3)),
    "saved_combined": dict(bleu_with_saved_data=True, bleu_mode="combined", bleu_ref_weights=(0.4, 0.3, 0.3),
                           bleu_saved_weights=(0.5, 0.5)),
    "first_step_factors": dict(bleu_with_saved_data=True, bleu_ref_factor=0.3, bleu_saved_factor=0.7,
                               bleu_first_ref_factor=0.8, bleu_first_saved_factor=0.2),
    "negative_factors": dict(bleu_with_saved_data=True, neg_bleu_factor=0.3, neg_cos_factor=0.7,
                             neg_cos_ref_factor=0.2, neg_cos_saved_factor=0.8, neg_bleu_ref_factor=0.6,
                             neg_bleu_saved_factor=0.4),
    "negative_factors_unsaved": dict(neg_bleu_factor=0.6, neg_cos_factor=0.4, neg_cos_ref_factor=0.7,
                                     neg_cos_saved_factor=0.3, bleu_ref_weights=(0.5, 0.3, 0.2)),
    "cosine_factors": dict(cos_ref_factor=0.3, cos_saved_factor=0.7, multi_cos_ref_factor=0.1,
                           multi_cos_saved_factor=0.6, multi_cos_running_mean_factor=0.3),
    "running_mean_decay": dict(running_mean_decay=0.5, multi_cos_ref_factor=0.2, multi_cos_saved_factor=0.4,
                               multi_cos_running_mean_factor=0.4),
    "no_running_mean": dict(use_running_mean=False),
    "len_max": dict(reward_len=True, max_rewarded_len=10, len_factor=0.2, bleu_factor=0.4, cos_factor=0.4,
                    neg_bleu_factor=0.4, neg_cos_factor=0.4),
    "len_max_negative": dict(reward_len=True, neg_reward_len=True, max_rewarded_len=10, len_factor=0.2,
                             bleu_factor=0.4, cos_factor=0.4, neg_bleu_factor=0.4, neg_cos_factor=0.4),
    "len_ref_negative": dict(reward_len=True, target_len_as_ref=True, neg_reward_len=True, len_factor=0.25,
                             bleu_factor=0.5, cos_factor=0.25, neg_bleu_factor=0.25, neg_cos_factor=0.5),
    "len_ref": dict(reward_len=True, target_len_as_ref=True, len_factor=0.5, bleu_factor=0.25, cos_factor=0.25,
                    neg_bleu_factor=0.25, neg_cos_factor=0.25, tanh_reward_scale=True, rewards_scale=2.0),
    "not_summing": dict(allow_not_summing_factors=True, bleu_with_saved_data=True, bleu_factor=0.7,
                        cos_factor=0.6, bleu_ref_factor=0.9, bleu_saved_factor=0.4, multi_cos_ref_factor=0.5,
                        multi_cos_saved_factor=0.5, multi_cos_running_mean_factor=0.5, neg_bleu_factor=0.8,
                        neg_cos_factor=0.9, neg_bleu_ref_factor=0.3, neg_bleu_saved_factor=0.9,
                        reward_len=True, max_rewarded_len=8, len_factor=0.5, rewards_scale=5.0),
}  # fmt: skip
MODES = {"standard": MrlRewardMode.STANDARD, "long_range": MrlRewardMode.LONG_RANGE,
         "negative": MrlRewardMode.NEGATIVE}  # fmt: skip


def randint(generator: torch.Generator, low: int, high: int, size=()) -> torch.Tensor:
    return torch.randint(low, high, size, generator=generator)


def padded(rows: list[list[int]], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Right-padded ``{"input_ids", "attention_mask"}``; odd rows hold garbage ids in their padding."""
    ids = torch.zeros(len(rows), WIDTH, dtype=torch.long)
    mask = torch.zeros(len(rows), WIDTH, dtype=torch.long)
    for b, row in enumerate(rows):
        row = row[:WIDTH]
        if b % 2:
            ids[b] = randint(generator, 0, VOCAB, (WIDTH,))
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def framed(body: list[int], frame: bool) -> list[int]:
    return [1, *body, 2] if frame else body


def step_inputs(step: int, generator: torch.Generator) -> dict[str, dict[str, torch.Tensor] | None]:
    """One step's batch: references and saved data from ids 3..48, answers built per row (module docstring)."""
    body = lambda n: randint(generator, 3, OUTSIDE, (n,)).tolist()  # noqa: E731
    ref_lengths = randint(generator, 2, WIDTH - 1, (BATCH,)).tolist()
    references = [framed(body(n - 2), b % 2 == 0) for b, n in enumerate(ref_lengths)]
    if step == 2:
        references[5] = []  # an empty reference (its answer is not empty)
    saved = [body(int(randint(generator, 3, WIDTH + 1))) for _ in range(BATCH)]
    ref0 = references[0]
    generated = [
        list(ref0),  # identical to the reference
        list(saved[1]),  # a copy of the saved data
        body(int(randint(generator, 1, WIDTH + 1))),  # random
        [] if step != 4 else body(2),  # empty (two tokens on the last step)
        [references[4][1], references[4][2]] * 6,  # a repeated bigram of the reference
        [references[5][0] if references[5] else 7],  # one token
        [t for tok in references[6][1:4] for t in (tok, OUTSIDE)],  # unigram matches, no bigram match
        [t if i % 2 else int(randint(generator, 3, OUTSIDE)) for i, t in enumerate(references[7] + saved[7][:4])],
    ]
    prev = None
    if PREV_GIVEN[step]:
        prev_rows = [body(int(randint(generator, 1, WIDTH + 1))) for _ in range(BATCH)]
        if step == 1:
            prev_rows[6] = []  # an empty interaction folded into the running mean
        prev = padded(prev_rows, generator)
    return {"generated": padded(generated, generator), "reference": padded(references, generator),
            "saved": padded(saved, generator), "prev": prev}  # fmt: skip


def as_json(batch: dict[str, torch.Tensor] | None):
    return None if batch is None else {k: v.tolist() for k, v in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("tests/data/rxlm_reward_fixture.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(VOCAB, DIM)
    with torch.no_grad():  # anisotropic like trained embeddings, so cosines are mostly positive, not clamped
        embedding.weight.add_(torch.randn(DIM) * 0.6)
    generator = torch.Generator().manual_seed(1)
    steps = [step_inputs(s, generator) for s in range(STEPS)]
    cases = []
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # NLTK warns on every unsmoothed zero n-gram count
        for name, config in CONFIGS.items():
            for mode_name, mode in MODES.items():
                model = MrlRewardModel(embedding, **config)
                rewards = [model(s["generated"], s["reference"], s["saved"], prev_data=s["prev"], mode=mode).tolist()
                           for s in steps]  # fmt: skip
                cases.append({"name": name, "mode": mode_name, "rewards": rewards})
    fixture = {
        "made_by": "experiments/parity/make_rxlm_reward_fixture.py",
        "versions": {p: importlib.metadata.version(p) for p in ("rxlm", "torch", "nltk")},
        "embedding": embedding.weight.tolist(),
        "configs": {name: {k: list(v) if isinstance(v, tuple) else v for k, v in c.items()}
                    for name, c in CONFIGS.items()},  # fmt: skip
        "steps": [{k: as_json(v) for k, v in s.items()} for s in steps],
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=args.out.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(fixture, tmp, separators=(",", ":"))
        tmp.write("\n")
    os.replace(tmp.name, args.out)
    print(f"wrote {args.out}: {len(cases)} cases x {STEPS} steps x {BATCH} rows ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
