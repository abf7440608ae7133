"""Byte-level BPE tokenizer with the shared special tokens, and the interaction format.

Byte-level BPE (as in GPT-2) encodes any text without unknown tokens and decodes it back byte for byte,
which the rewards rely on when they compare decoded answers. The special tokens take ids 0..6 in the order
of :mod:`rxmrl.special_tokens` and are *added tokens*, so ``[Q]`` in a text is always one token.

Interaction format (the decoder reads the query and ``[A]``, then generates the answer up to ``[EOS]``)::

    query       = [BOS] [Q] q-tokens
    answer      = [A] a-tokens [EOS]
    interaction = query + answer         answer (target) mask = 1 on a-tokens and [EOS]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rxmrl.special_tokens import ANSWER_ID, BOS_ID, EOS_ID, PAD, PAD_ID, QUERY_ID, SPECIAL_TOKENS

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerFast

TOKENIZER_FILE = "tokenizer.json"
DEFAULT_VOCAB_SIZE = 4096


def query_layout(tokens: Sequence[int]) -> list[int]:
    """``[BOS][Q] q``: a query's tokens as the decoder reads them (the one place the query is laid out)."""
    return [BOS_ID, QUERY_ID, *tokens]


def answer_layout(tokens: Sequence[int]) -> list[int]:
    """``[A] a [EOS]``: an answer's tokens as the decoder writes them (the one place the answer is laid out)."""
    return [ANSWER_ID, *tokens, EOS_ID]


@dataclass(frozen=True)
class EncodedInteraction:
    """One interaction padded to ``max_length``; ``truncated`` says the tail was cut."""

    input_ids: list[int]
    attention_mask: list[int]
    answer_mask: list[int]
    truncated: bool


@dataclass(frozen=True)
class InteractionBatch:
    input_ids: torch.Tensor  # (B, L) long, right-padded with [PAD]
    attention_mask: torch.Tensor  # (B, L) long, 1 on real tokens
    answer_mask: torch.Tensor  # (B, L) long, 1 on answer tokens and [EOS] (the decoder's targets)
    truncated: torch.Tensor  # (B,) bool


class RxTokenizer:
    """A trained :class:`tokenizers.Tokenizer` plus the interaction format of the Reactive Transformer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        for token_id, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != token_id:
                raise ValueError(f"special token {token} has id {tokenizer.token_to_id(token)}, expected {token_id}")
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    # -------------------------------------------------------------------------------------- text <-> ids
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added (``[Q]`` written in the text stays one token)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.decode_batch([[int(i) for i in ids] for ids in batch],
                                           skip_special_tokens=skip_special_tokens)

    # ----------------------------------------------------------------------------- interaction format
    def encode_query(self, text: str) -> list[int]:
        """``[BOS][Q] q``: what the decoder reads before ``[A]``."""
        return query_layout(self.encode(text))

    def encode_prompt(self, text: str) -> list[int]:
        """``[BOS][Q] q [A]``: the decoder's input when it generates an answer."""
        return [*self.encode_query(text), ANSWER_ID]

    def encode_answer(self, text: str) -> list[int]:
        """``[A] a [EOS]``."""
        return answer_layout(self.encode(text))

    def encode_query_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``[BOS][Q] q`` per text, one batched encoding."""
        return [query_layout(ids) for ids in self.encode_batch(texts)]

    def encode_answer_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``[A] a [EOS]`` per text, one batched encoding."""
        return [answer_layout(ids) for ids in self.encode_batch(texts)]

    def encode_interaction(self, query: str, answer: str, max_length: int) -> EncodedInteraction:
        """``[BOS][Q] q [A] a [EOS]`` cut to ``max_length`` (tail first) and right-padded with ``[PAD]``."""
        return self._pack(self.encode_query(query), self.encode(answer), max_length)

    def encode_interactions(self, queries: Sequence[str], answers: Sequence[str],
                            max_length: int) -> InteractionBatch:
        if len(queries) != len(answers):
            raise ValueError(f"{len(queries)} queries but {len(answers)} answers: expected one answer per query")
        answer_ids = self.encode_batch(answers)
        rows = [self._pack(q, a, max_length) for q, a in zip(self.encode_query_batch(queries), answer_ids)]
        return _stack(rows)

    def encode_queries(self, queries: Sequence[str], max_length: int | None = None,
                       add_answer_marker: bool = False) -> InteractionBatch:
        """Right-padded ``[BOS][Q] q`` rows (``+ [A]`` for generation prompts); answer mask all zero."""
        marker = [ANSWER_ID] if add_answer_marker else []
        ids = [[*q, *marker] for q in self.encode_query_batch(queries)]
        length = max_length or max(len(row) for row in ids)
        rows = [_pad(row[:length], [0] * min(len(row), length), length, len(row) > length) for row in ids]
        return _stack(rows)

    def _pack(self, query_ids: list[int], answer_tokens: list[int], max_length: int) -> EncodedInteraction:
        if max_length < 1:
            raise ValueError(f"max_length={max_length}: expected a positive length")
        ids = query_ids + answer_layout(answer_tokens)
        targets = [0] * (len(query_ids) + 1) + [1] * (len(answer_tokens) + 1)
        return _pad(ids[:max_length], targets[:max_length], max_length, len(ids) > max_length)

    # -------------------------------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Writes ``directory/tokenizer.json`` (+ HF config files so ``AutoTokenizer`` finds it)."""
        from rxmrl.runtime import staged_files

        directory = Path(directory)
        with staged_files(directory) as staging:  # each file replaced atomically
            self.tokenizer.save(str(staging / TOKENIZER_FILE))
            self.to_hf().save_pretrained(str(staging))
        return directory / TOKENIZER_FILE

    @classmethod
    def load(cls, path: str | os.PathLike) -> RxTokenizer:
        """From a ``tokenizer.json`` file or a folder holding one."""
        from rxmrl.runtime import InputError, MissingInput

        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise MissingInput(f"no tokenizer at {path}: expected a {TOKENIZER_FILE} or a folder with one")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # noqa: BLE001 -- the tokenizers library raises a bare Exception on bad JSON
            raise InputError(f"{path}: not a tokenizer ({' '.join(str(error).split())[:160]})") from error
        try:
            return cls(tokenizer)
        except ValueError as error:
            raise InputError(f"{path}: not an rxmrl tokenizer: {error}") from error

    def to_hf(self) -> PreTrainedTokenizerFast:
        from transformers import PreTrainedTokenizerFast

        from rxmrl.special_tokens import ANSWER, BOS, EOS, MASK, QUERY, THINK

        return PreTrainedTokenizerFast(
            tokenizer_object=self.tokenizer.__class__.from_str(self.tokenizer.to_str()),
            bos_token=BOS, eos_token=EOS, pad_token=PAD, mask_token=MASK,
            additional_special_tokens=[QUERY, ANSWER, THINK], padding_side="right",
        )


def _pad(ids: list[int], targets: list[int], length: int, truncated: bool) -> EncodedInteraction:
    padding = length - len(ids)
    return EncodedInteraction(ids + [PAD_ID] * padding, [1] * len(ids) + [0] * padding,
                              targets + [0] * padding, truncated)


def _stack(rows: list[EncodedInteraction]) -> InteractionBatch:
    import torch

    return InteractionBatch(
        torch.tensor([r.input_ids for r in rows], dtype=torch.long),
        torch.tensor([r.attention_mask for r in rows], dtype=torch.long),
        torch.tensor([r.answer_mask for r in rows], dtype=torch.long),
        torch.tensor([r.truncated for r in rows], dtype=torch.bool),
    )


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, min_frequency: int = 2,
                    show_progress: bool = False) -> RxTokenizer:
    """Byte-level BPE over ``texts`` with the special tokens at ids 0..6.

    The vocabulary may end smaller than ``vocab_size`` when the corpus has fewer useful merges (the
    embedded world is small); :attr:`RxTokenizer.vocab_size` gives the real size.
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size={vocab_size}: expected at least {len(SPECIAL_TOKENS) + 256} "
                         "(special tokens + 256 bytes)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return RxTokenizer(tokenizer)
