"""A reference tokenizer mapped onto our special-token roles, by relabelling token ids.

Our components agree on fixed ids for the special tokens (``rxmrl.special_tokens``: ``[PAD]`` 0, ``[BOS]`` 1,
``[EOS]`` 2, ``[Q]`` 3, ``[A]`` 4, ``[T]`` 5, ``[MASK]`` 6). A reference tokenizer puts them elsewhere
(``[PAD] [UNK] [BOS] [EOS] [MASK] [Q] [A] ...``). Rather than thread a second id table through the env and the
rewards, conversion *relabels* the vocabulary with one permutation ``new_id = relabel[old_id]`` and applies it to
the tokenizer and to the model's vocabulary-indexed weights (embedding rows, LM head rows and bias)::

    logits_ours[..., relabel[j]] = logits_theirs[..., j]        for every old token j

so the converted model computes the same function on relabelled ids. A role the reference tokenizer lacks
(``[T]``, ``[MASK]`` in some) gets a new token: a zero embedding and an LM-head row whose bias is
``BLOCKED_LOGIT``, so the model never generates it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rxmrl.special_tokens import SPECIAL_TOKENS

ROLE_NAMES = {"pad": "[PAD]", "bos": "[BOS]", "eos": "[EOS]", "query": "[Q]", "answer": "[A]", "think": "[T]",
              "mask": "[MASK]"}
"""Our roles in id order (``SPECIAL_TOKENS``), with our token names."""
REQUIRED_ROLES = ("pad", "bos", "eos", "query", "answer")
"""Roles the interaction format cannot do without; ``think`` and ``mask`` are added when missing."""
BLOCKED_LOGIT = -1e4
"""LM-head bias of an added token: never the argmax, ``exp`` underflows to 0 in float32."""

assert tuple(ROLE_NAMES.values()) == SPECIAL_TOKENS


@dataclass
class VocabMapping:
    """``relabel[old_id] = new_id`` for the ``old_size`` reference tokens; ``added`` new tokens after them."""

    relabel: list[int]
    added: list[str] = field(default_factory=list)

    @property
    def old_size(self) -> int:
        return len(self.relabel)

    @property
    def new_size(self) -> int:
        return len(self.relabel) + len(self.added)

    def order(self) -> list[int]:
        """``order[new_id] = row``: rows ``< old_size`` are old tokens, the rest the added ones in turn."""
        order = [0] * self.new_size
        for old, new in enumerate(self.relabel):
            order[new] = old
        free = sorted(set(range(self.new_size)) - set(self.relabel))
        for k, new in enumerate(free):
            order[new] = self.old_size + k
        return order

    def ids(self, old_ids: list[int]) -> list[int]:
        """Reference ids in our labels (the -1 / -2 stream markers pass through)."""
        return [self.relabel[i] if i >= 0 else i for i in old_ids]

    def rows(self, weight: Tensor, fill: float = 0.0) -> Tensor:
        """A vocabulary-indexed tensor ``[V_old, ...]`` in our labels ``[V_new, ...]`` (added rows = ``fill``)."""
        if weight.shape[0] != self.old_size:
            raise ValueError(f"a vocabulary tensor has {weight.shape[0]} rows, the tokenizer {self.old_size} tokens")
        extra = weight.new_full((len(self.added), *weight.shape[1:]), fill)
        return torch.cat((weight, extra))[torch.tensor(self.order())]


LOADER_ADDED = ("[CLS]", "[SEP]")
"""Tokens the reference's tokenizer loader adds when ``tokenizer.json`` lacks them (its
``PreTrainedTokenizerFast(cls_token="[CLS]", sep_token="[SEP]", ...)``), so its models have rows for them."""


def pad_tokenizer(tokenizer_json: dict[str, Any], model_vocab: int) -> dict[str, Any]:
    """The tokenizer with added tokens for the model rows past its vocabulary (the loader's additions).

    A model whose vocabulary is larger than ``tokenizer.json`` was built with ``len(tokenizer)`` after the
    reference loader added its missing ``[CLS]`` / ``[SEP]``; further rows are named ``[EXTRA_k]``.
    """
    size = vocab_size(tokenizer_json)
    if model_vocab < size:
        raise ValueError(f"the model has {model_vocab} vocabulary rows, its tokenizer {size} tokens")
    present = token_ids(tokenizer_json)
    names = [t for t in LOADER_ADDED if t not in present]
    names += [f"[EXTRA_{k}]" for k in range(model_vocab - size)]
    data = json.loads(json.dumps(tokenizer_json))
    data.setdefault("added_tokens", []).extend(
        {"id": index, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for index, name in zip(range(size, model_vocab), names))
    return data


def role_ids(tokenizer_json: dict[str, Any], given: dict[str, int] | None = None) -> dict[str, int]:
    """Reference id of each of our roles: ``given`` ids first (a model's tokenizer config), then by name.

    Raises a ``ValueError`` naming the roles that cannot be mapped.
    """
    vocab = token_ids(tokenizer_json)
    roles = dict(given or {})
    for role, name in ROLE_NAMES.items():
        if role not in roles and name in vocab:
            roles[role] = vocab[name]
    missing = [role for role in REQUIRED_ROLES if role not in roles]
    if missing:
        specials = sorted(t["content"] for t in tokenizer_json.get("added_tokens", []) if t.get("special"))
        raise ValueError(
            f"the tokenizer has no token for the role(s) {', '.join(f'{r} ({ROLE_NAMES[r]})' for r in missing)}; "
            f"its special tokens are {specials}. Expected tokens named {[ROLE_NAMES[r] for r in missing]} "
            "or their ids in the model's tokenizer_config")
    size = vocab_size(tokenizer_json)
    for role, index in roles.items():
        if not 0 <= index < size:
            raise ValueError(f"role {role} has id {index}, outside the tokenizer's {size} tokens")
    if len(set(roles.values())) != len(roles):
        raise ValueError(f"two roles share one token: {roles}")
    return roles


def mapping_for(tokenizer_json: dict[str, Any], roles: dict[str, int]) -> VocabMapping:
    """The relabelling that puts ``roles`` at our ids (``SPECIAL_TOKENS`` order), other tokens in order after."""
    size = vocab_size(tokenizer_json)
    relabel = [-1] * size
    added = []
    for new, role in enumerate(ROLE_NAMES):
        if role in roles:
            relabel[roles[role]] = new
        else:
            added.append(ROLE_NAMES[role])
    taken = {relabel[i] for i in roles.values()}
    free = iter(i for i in range(size + len(added)) if i not in taken and i >= len(ROLE_NAMES))
    for old in range(size):
        if relabel[old] < 0:
            relabel[old] = next(free)
    mapping = VocabMapping(relabel, added)
    # Added roles take the role ids left free; the old tokens fill the rest, in order.
    assert sorted(mapping.order()) == list(range(mapping.new_size))
    return mapping


def token_ids(tokenizer_json: dict[str, Any]) -> dict[str, int]:
    """Every token's id: the model's vocabulary and the added tokens."""
    model = tokenizer_json["model"]
    if model["type"] == "Unigram":
        ids = {piece: i for i, (piece, _) in enumerate(model["vocab"])}
    elif model["type"] in ("BPE", "WordPiece", "WordLevel"):
        ids = dict(model["vocab"])
    else:
        raise ValueError(f"tokenizer model type {model['type']!r} is not supported; expected BPE, WordPiece, "
                         "WordLevel or Unigram")
    ids.update({t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])})
    return ids


def vocab_size(tokenizer_json: dict[str, Any]) -> int:
    return max(token_ids(tokenizer_json).values()) + 1


def relabel_tokenizer(tokenizer_json: dict[str, Any], mapping: VocabMapping, roles: dict[str, int]) -> str:
    """The tokenizer JSON with ids relabelled, role tokens renamed to ours and missing roles added.

    Every token, added ones included, is written into the model's vocabulary at its new id (the library
    numbers an added token that is not in the model's vocabulary after it, whatever id the file gives). The
    post-processor is dropped (we place special tokens explicitly, never through a template), and a
    byte-level tokenizer without a decoder gets the byte-level decoder, so decoding gives text (the reference
    fixes the byte symbols by hand after decoding).
    """
    data = json.loads(json.dumps(tokenizer_json))
    old_names = {index: name for name, index in token_ids(tokenizer_json).items()}
    rename = {old_names[index]: ROLE_NAMES[role] for role, index in roles.items()}
    names = [rename.get(old_names[old], old_names[old]) for old in range(mapping.old_size)] + mapping.added
    order = mapping.order()
    model = data["model"]
    if model["type"] == "Unigram":
        scores = [score for _, score in model["vocab"]]
        model["vocab"] = [[names[row], scores[row] if row < len(scores) else 0.0] for row in order]
        if model.get("unk_id") is not None:
            model["unk_id"] = mapping.relabel[model["unk_id"]]
    else:
        model["vocab"] = {names[row]: new for new, row in enumerate(order)}
        if model.get("unk_token") in rename:
            model["unk_token"] = rename[model["unk_token"]]
    for token in data.get("added_tokens", []):
        token["id"] = mapping.relabel[token["id"]]
        token["content"] = rename.get(token["content"], token["content"])
    for new, row in enumerate(order):
        if row >= mapping.old_size:
            data.setdefault("added_tokens", []).append({
                "id": new, "content": names[row], "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True})
    data["added_tokens"].sort(key=lambda t: t["id"])
    data["post_processor"] = None
    byte_level = _pre_tokenizers(data.get("pre_tokenizer"), "ByteLevel")
    for pre_tokenizer in byte_level:
        pre_tokenizer["add_prefix_space"] = False
    for pre_tokenizer in _pre_tokenizers(data.get("pre_tokenizer"), "Metaspace"):
        pre_tokenizer["prepend_scheme"] = "never"
    if data.get("decoder") is None and byte_level:
        data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                           "use_regex": True}
    return json.dumps(data, ensure_ascii=False)


def _pre_tokenizers(pre_tokenizer: dict[str, Any] | None, kind: str) -> list[dict[str, Any]]:
    """The pre-tokenizers of type ``kind`` in ``pre_tokenizer`` (itself or inside a Sequence).

    The reference always tokenizes text right after a special token (``[BOS][Q]query[A]answer[EOS]`` as one
    string), where a byte-level (or metaspace) pre-tokenizer adds no prefix space. We encode each text on its
    own, so the converted tokenizer turns the prefix space off to give the reference's ids.
    """
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == kind:
        return [pre_tokenizer]
    return [found for p in pre_tokenizer.get("pretokenizers", []) for found in _pre_tokenizers(p, kind)]
