"""Special tokens shared by the tokenizer, the model, the rewards and the environment.

Their ids are fixed (the first ids of every tokenizer we train) so that components that never see the
tokenizer -- reward functions stripping markers, the model closing an answer with ``[EOS]`` -- agree
with it without passing it around.

Interaction format::

    query       = [BOS] [Q] query tokens
    answer      = [A] answer tokens [EOS]
    interaction = query + answer            (what the memory encoder reads)
"""

from __future__ import annotations

PAD, BOS, EOS, QUERY, ANSWER, THINK, MASK = "[PAD]", "[BOS]", "[EOS]", "[Q]", "[A]", "[T]", "[MASK]"

SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, QUERY, ANSWER, THINK, MASK)
"""In id order: ``SPECIAL_TOKENS[i]`` has id ``i``."""

PAD_ID, BOS_ID, EOS_ID, QUERY_ID, ANSWER_ID, THINK_ID, MASK_ID = range(len(SPECIAL_TOKENS))
SPECIAL_TOKEN_IDS: frozenset[int] = frozenset(range(len(SPECIAL_TOKENS)))
