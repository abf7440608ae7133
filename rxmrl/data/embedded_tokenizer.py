"""The tokenizer of the embedded curriculum: trained on the offline generator's texts, cached on disk.

It lives with the data, not in :mod:`rxmrl.tokenizer`, because it is made from the generator's stories:
the tokenizer itself knows nothing of any data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rxmrl.data import storygen, world
from rxmrl.data.storygen import GENERATOR_VERSION, generate_interactions, generate_stories
from rxmrl.runtime import atomic_file
from rxmrl.tokenizer import DEFAULT_VOCAB_SIZE, TOKENIZER_FILE, RxTokenizer, train_tokenizer


def _cache_dir() -> Path:
    return Path(os.environ.get("RXMRL_CACHE", Path.home() / ".cache" / "rxmrl")).expanduser()


def embedded_corpus(seed: int = 0) -> list[str]:
    """The texts the default tokenizer is trained on: train-split stories and interactions."""
    texts = generate_stories("train", 2000, seed)
    texts += [f"{i.query}\n{i.answer}" for i in generate_interactions("train", 4000, seed)]
    return texts


def default_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> RxTokenizer:
    """The tokenizer of the embedded curriculum, trained once and cached by generator version and size.

    Cached at ``$RXMRL_CACHE`` (default ``~/.cache/rxmrl``)``/tokenizer-v<version>-<size>-<key>/``; the key
    hashes the generator version and source, so a changed world vocabulary retrains it.
    """
    # The key also hashes the generator's source, so an edited world never meets a stale tokenizer.
    sources = [Path(module.__file__).read_text(encoding="utf-8") for module in (storygen, world)]
    key = hashlib.sha1(json.dumps([GENERATOR_VERSION, vocab_size, *sources]).encode()).hexdigest()[:10]
    path = _cache_dir() / f"tokenizer-v{GENERATOR_VERSION}-{vocab_size}-{key}" / TOKENIZER_FILE
    if path.is_file():
        return RxTokenizer.load(path)
    tokenizer = train_tokenizer(embedded_corpus(), vocab_size)
    with atomic_file(path) as temporary:  # concurrent first calls never read a half-written file
        tokenizer.tokenizer.save(str(temporary))
    return tokenizer
