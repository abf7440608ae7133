"""The composite memory-retention reward of MRL, on a 0-10 scale, with every component by name.

Per step, with generated answer G, reference answer R, saved data S (the interaction holding what the
answer needs) and, after the first step, a running mean M of earlier interactions (``RunningMean``)::

    standard    w_bleu·(a·BLEU(G,R) + b·BLEU(G,S)) + w_cos·(c·cos(G,R) + d·cos(G,S) + e·cos(G,M)) + w_len·len(G,R)
                + w_mem·F_beta(G; memory tokens)
    long_range  the same with S = the first interaction and the running-mean term inverted, e·(1 − cos(G,M)):
                the answer must come from the first interaction, not from the recent ones
    negative    w_bleu·(a·BLEU(G,R) + b·(1 − BLEU(G,S))) + w_cos·(c'·cos(G,R) + d'·(1 − cos(G,S))) + w_len·len:
                the topic-switch step of a long-range episode rewards *not* copying the saved data

    reward = scale · clip(total, 0, 1)

The memory term (:mod:`rxmrl.rewards.memory_tokens`) scores the words of R that only memory can supply:
content words of R that the conversation's earlier interactions hold and the query does not, by recall and
precision (F_beta). It needs the step's :class:`MemoryTarget` (``memory_targets=``, built once per episode by
:meth:`MemoryRetentionReward.memory_targets`). Where a step has no memory tokens, and in ``negative`` mode
(the topic switch has nothing to remember), the term is left out and the other weights are renormalised:
``total = (total − w_mem·F) / (1 − w_mem)``, so the reward keeps its [0, scale] range.

Cosines are clipped at 0 first. Samples without a running mean (the first step) use the first-step cosine
factors ``c', d'`` (no e term). Each factor group sums to 1 (validated), so every term and the total lie in
[0, 1] and the reward in [0, scale] whatever the inputs.

Presets (``RewardConfig.preset(name)``; ``rxmrl.rewards.preset_reward(name)`` builds any preset's reward):

* ``rxlm`` -- the reference framework's reward, reproduced exactly by :class:`rxmrl.rewards.RxlmReward`
  (not a ``RewardConfig``; see ``rxmrl.rewards.rxlm``).
* ``rxnn-len`` -- BLEU 0.4 / cosine 0.5 / length 0.1; BLEU reference 0.4 / saved 0.6; cosine reference
  0.35 / saved 0.65 (no running-mean term is specified for it, so none is used).
* ``default`` -- ours: special tokens stripped before BLEU and cosine; BLEU-2 method4 against reference and
  saved data 0.5/0.5; cosine factors as ``rxlm``; BLEU 0.4 / cosine 0.5 / length 0.1; meant to be used with
  a frozen similarity backend (sentence encoder, or ``TokenEmbeddingSimilarity`` on a frozen copy).
* ``memory`` -- pays for memory: memory-token F1 0.6, with smaller fluency terms against the reference only
  (BLEU 0.15, cosine 0.15, length 0.1). Nothing is paid for resembling the saved data or the running mean,
  so copying the conversation earns only what its memory tokens are worth, and an answer with the
  remembered facts wrong loses the memory term whatever its fluency.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from rxmrl.rewards.bleu import SMOOTHING_METHODS, token_bleu
from rxmrl.rewards.id_reward import IdReward, PaddedTriple, RewardOutput
from rxmrl.rewards.ids import as_padded, strip_ids
from rxmrl.rewards.length import length_score
from rxmrl.rewards.memory_tokens import MemoryTarget, WordStatistics, episode_memory_targets, memory_score
from rxmrl.rewards.similarity import SentenceEncoderSimilarity, SimilarityBackend
from rxmrl.special_tokens import SPECIAL_TOKEN_IDS, SPECIAL_TOKENS

Mode = Literal["standard", "long_range", "negative"]
MODES: tuple[str, ...] = ("standard", "long_range", "negative")
PRESETS: tuple[str, ...] = ("default", "memory", "rxlm", "rxnn-len")


@dataclass(frozen=True)
class RewardConfig:
    """Factors of the composite reward (see the module docstring for the equations)."""

    bleu_weight: float = 0.4  # w_bleu
    cosine_weight: float = 0.5  # w_cos
    length_weight: float = 0.1  # w_len
    memory_weight: float = 0.0  # w_mem: memory-token F_beta (needs memory_targets=)
    memory_beta: float = 1.0  # beta of F_beta: > 1 weighs recall over precision
    template_frequency: float = 0.1  # words in more than this share of a corpus's interactions are no memory
    bleu_reference: float = 0.5  # a
    bleu_saved: float = 0.5  # b
    cosine_reference_first: float = 0.5  # c' (no running mean yet)
    cosine_saved_first: float = 0.5  # d'
    cosine_reference: float = 0.3  # c (with a running mean)
    cosine_saved: float = 0.5  # d
    cosine_running_mean: float = 0.2  # e
    bleu_weights: tuple[float, ...] = (0.5, 0.5)  # n-gram weights: BLEU-2
    smoothing: str = "method4"  # NLTK smoothing: none | method1 | method3 | method4
    strip_special_tokens: bool = True  # drop [PAD] [BOS] [EOS] [Q] [A] [T] [MASK] before BLEU and cosine
    overlong_penalty: float = 2.0  # slope of the length term past the reference length
    scale: float = 10.0  # reward range is [0, scale]
    validate_factors: bool = True  # False: allow groups that do not sum to 1 (the total is still clipped)
    tolerance: float = 1e-6

    def __post_init__(self) -> None:
        object.__setattr__(self, "bleu_weights", tuple(float(w) for w in self.bleu_weights))
        if self.smoothing not in SMOOTHING_METHODS:
            raise ValueError(f"smoothing must be one of {SMOOTHING_METHODS}, got {self.smoothing!r}")
        if self.memory_weight >= 1.0 or not 0.0 < self.template_frequency <= 1.0 or self.memory_beta <= 0:
            raise ValueError(
                f"memory_weight must lie in [0, 1) (got {self.memory_weight}), template_frequency in (0, 1] "
                f"(got {self.template_frequency}) and memory_beta > 0 (got {self.memory_beta})"
            )
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive finite number, got {self.scale}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if is_number and field.name != "scale" and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"{field.name} must be a finite non-negative number, got {value}")
        if not self.validate_factors:
            return
        groups = {
            "bleu_weight + cosine_weight + length_weight + memory_weight": (
                self.bleu_weight, self.cosine_weight, self.length_weight, self.memory_weight),
            "bleu_reference + bleu_saved": (self.bleu_reference, self.bleu_saved),
            "cosine_reference_first + cosine_saved_first": (self.cosine_reference_first, self.cosine_saved_first),
            "cosine_reference + cosine_saved + cosine_running_mean": (
                self.cosine_reference,
                self.cosine_saved,
                self.cosine_running_mean,
            ),
        }
        for name, factors in groups.items():
            if abs(sum(factors) - 1.0) > self.tolerance:
                raise ValueError(
                    f"{name} must sum to 1 (within {self.tolerance}), got {' + '.join(map(str, factors))} = "
                    f"{sum(factors)}; rescale them or pass validate_factors=False"
                )

    @classmethod
    def preset(cls, name: str, **overrides) -> RewardConfig:
        """A named preset (``default``, ``memory``, ``rxnn-len``), optionally with fields overridden."""
        presets = {
            "default": {},
            "memory": dict(
                bleu_weight=0.15, cosine_weight=0.15, length_weight=0.1, memory_weight=0.6,
                bleu_reference=1.0, bleu_saved=0.0, cosine_reference_first=1.0, cosine_saved_first=0.0,
                cosine_reference=1.0, cosine_saved=0.0, cosine_running_mean=0.0,
            ),
            "rxnn-len": dict(
                bleu_weight=0.4, cosine_weight=0.5, length_weight=0.1, bleu_reference=0.4, bleu_saved=0.6,
                cosine_reference_first=0.35, cosine_saved_first=0.65,
                cosine_reference=0.35, cosine_saved=0.65, cosine_running_mean=0.0,
            ),
        }  # fmt: skip
        if name == "rxlm":
            raise ValueError("reward preset 'rxlm' is rxlm's MrlRewardModel, built as rxmrl.rewards.RxlmReward "
                             "(config RxlmRewardConfig): use rxmrl.rewards.preset_reward('rxlm', ...)")
        if name not in presets:
            raise ValueError(f"unknown reward preset {name!r}; expected one of {PRESETS}")
        return cls(**{**presets[name], **overrides})


_SPECIAL_TEXT = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
_WORDS = re.compile(r"\w+|[^\w\s]")


class MemoryRetentionReward(IdReward):
    """The composite memory-retention reward, scoring B samples in one call.

    Batched call (ids; what the trainer and the batched environment use)::

        out = reward(generated, reference, saved,
                     generated_lengths=None, reference_lengths=None, saved_lengths=None,
                     modes="standard",          # or one of MODES per sample
                     running_mean=None,         # [B, E] tensor, or a list of [E] tensors / None
                     running_mean_mask=None,    # [B] bool: which rows of running_mean exist
                     memory_targets=None)       # B MemoryTarget (or None): needed when memory_weight > 0
        out.reward        # [B] float32 in [0, config.scale]
        out.components    # dict name -> [B]

    ``generated``, ``reference`` and ``saved`` are each a right-padded ``[B, L]`` LongTensor (+ ``[B]``
    lengths; default: full rows) or ``B`` id lists. Rows without a running mean (the first step of an
    episode) use the first-step cosine factors. ``score_texts`` is the same on strings (for the TRL adapter
    and the text environment): BLEU on ``tokenize(text)`` ids (default: words and punctuation).
    Scoring B samples at once equals scoring each alone.

    The running mean lives in embedding space of ``similarity``: build it from ``embed_ids`` /
    ``embed_texts`` of this reward (they strip special tokens exactly as the preset does). The memory
    targets of an episode come from :meth:`memory_targets`, once per episode (they depend on the data only).
    """

    def __init__(self, config: RewardConfig | str = "default", similarity: SimilarityBackend | None = None, *,
                 decode: Callable[[Sequence[int]], str] | None = None,
                 tokenize: Callable[[str], Sequence[int]] | None = None) -> None:
        self.config = RewardConfig.preset(config) if isinstance(config, str) else config
        self.similarity = similarity if similarity is not None else SentenceEncoderSimilarity(decode=decode)
        self.tokenize = tokenize
        self.decode = decode if decode is not None else getattr(self.similarity, "decode", None)
        self._drop = SPECIAL_TOKEN_IDS if self.config.strip_special_tokens else frozenset()
        self._template_words: tuple[WordStatistics | None, frozenset[str]] = (None, frozenset())

    @property
    def _cosine_uses_saved(self) -> bool:
        """Whether a cosine term reads the saved data (a preset that weighs it 0 never embeds it)."""
        return self.config.cosine_saved > 0 or self.config.cosine_saved_first > 0

    # ---- memory tokens (what the environment asks for once per episode) ----
    @property
    def uses_memory_targets(self) -> bool:
        """Whether calls need ``memory_targets=`` (the preset pays for memory tokens)."""
        return self.config.memory_weight > 0

    def memory_targets(self, episode, steps: int | None = None,
                       statistics: WordStatistics | None = None) -> list[MemoryTarget]:
        """The :class:`MemoryTarget` of each of the first ``steps`` follow-ups of ``episode``, against the
        conversation as the data has it; ``statistics`` names the template words (none when ``None``)."""
        return episode_memory_targets(episode, steps, self.template_words(statistics))

    def template_words(self, statistics: WordStatistics | None) -> frozenset[str]:
        """The words of ``statistics``'s corpus too frequent to be memory (``config.template_frequency``)."""
        if statistics is None:
            return frozenset()
        if self._template_words[0] is not statistics:  # once per corpus, not per episode
            self._template_words = (statistics, statistics.template_words(self.config.template_frequency))
        return self._template_words[1]

    # ---- embeddings (also used by the environment for the running mean) ----
    def _prepare(self, ids, lengths, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch padded, with this preset's special tokens stripped."""
        ids, lengths = as_padded(ids, lengths, device=device)
        return strip_ids(ids, lengths, self._drop)

    def embed_ids(self, ids, lengths: torch.Tensor | None = None, *, cache: bool = True) -> torch.Tensor:
        """``[B, E]`` embeddings of token ids after this preset's special-token stripping."""
        ids, lengths = self._prepare(ids, lengths)
        return self.similarity.embed_ids(ids, lengths, cache=cache).to(ids.device)

    def embed_texts(self, texts: Sequence[str], *, cache: bool = True) -> torch.Tensor:
        """``[B, E]`` embeddings of texts after this preset's special-token stripping."""
        return self.similarity.embed_texts([self._clean_text(t) for t in texts], cache=cache)

    # ---- scoring ----
    def _score(self, ids: PaddedTriple, modes, running_mean, running_mean_mask, memory_targets) -> RewardOutput:
        """Score B answers given as token ids, padded and stripped (see the class docstring)."""
        gen, gen_len, ref, ref_len, sav, sav_len = ids
        device, batch = gen.device, gen.shape[0]
        bleu_ref, bleu_sav = self._bleu_pair(gen, gen_len, ref, ref_len, sav, sav_len)
        emb = self.similarity
        e_gen = emb.embed_ids(gen, gen_len, cache=False).to(device)
        e_ref = emb.embed_ids(ref, ref_len, cache=True).to(device)
        e_sav = emb.embed_ids(sav, sav_len, cache=True).to(device) if self._cosine_uses_saved else None
        memory = self._memory(lambda: [self._decode(row) for row in _id_rows(gen, gen_len)], memory_targets, batch)
        return self._combine(
            bleu_ref, bleu_sav, e_gen, e_ref, e_sav, gen_len, ref_len, modes, running_mean, running_mean_mask,
            memory,
        )

    def score_texts(
        self,
        generated: Sequence[str],
        reference: Sequence[str],
        saved: Sequence[str],
        *,
        modes: str | Sequence[str] = "standard",
        running_mean: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        running_mean_mask: torch.Tensor | None = None,
        memory_targets: Sequence[MemoryTarget | None] | None = None,
    ) -> RewardOutput:
        """Score B answers given as strings (see the class docstring)."""
        if not (len(generated) == len(reference) == len(saved)):
            raise ValueError(
                f"batch sizes differ: generated {len(generated)}, reference {len(reference)}, saved {len(saved)}"
            )
        gen_t, ref_t, sav_t = ([self._clean_text(t) for t in texts] for texts in (generated, reference, saved))
        gen, gen_len, ref, ref_len, sav, sav_len = self._text_ids(gen_t, ref_t, sav_t)
        bleu_ref, bleu_sav = self._bleu_pair(gen, gen_len, ref, ref_len, sav, sav_len)
        e_gen = self.similarity.embed_texts(gen_t, cache=False)
        e_ref = self.similarity.embed_texts(ref_t, cache=True).to(e_gen.device)
        e_sav = self.similarity.embed_texts(sav_t, cache=True).to(e_gen.device) if self._cosine_uses_saved else None
        memory = self._memory(lambda: gen_t, memory_targets, len(gen_t))
        return self._combine(
            bleu_ref.to(e_gen.device), bleu_sav.to(e_gen.device), e_gen, e_ref, e_sav,
            gen_len.to(e_gen.device), ref_len.to(e_gen.device), modes, running_mean, running_mean_mask, memory,
        )  # fmt: skip

    # ---- internals ----
    def _memory(self, answers: Callable[[], Sequence[str]], targets, batch: int) -> dict[str, torch.Tensor]:
        """Memory-token F_beta, recall and precision ``[B]`` (NaN where a row has no target)."""
        if not self.uses_memory_targets:
            return {}
        if targets is None:
            raise ValueError(
                "this reward pays for memory tokens (memory_weight > 0): pass memory_targets=, one MemoryTarget "
                "per sample, from reward.memory_targets(episode)"
            )
        if len(targets) != batch:
            raise ValueError(f"got {len(targets)} memory targets for a batch of {batch}")
        nan = (math.nan, math.nan, math.nan)
        scores = [nan if t is None else memory_score(text, t, self.config.memory_beta)
                  for text, t in zip(answers(), targets)]
        recall, precision, f_beta = torch.tensor(scores, dtype=torch.float32).reshape(batch, 3).unbind(1)
        return {"memory": f_beta, "memory_recall": recall, "memory_precision": precision}

    def _decode(self, ids: Sequence[int]) -> str:
        if self.decode is None:
            raise ValueError("scoring memory tokens on ids needs decode=(ids -> text)")
        return self.decode(ids)

    def _clean_text(self, text: str) -> str:
        if not isinstance(text, str):
            raise TypeError(f"expected a string answer, got {type(text).__name__}")
        if self.config.strip_special_tokens:
            text = " ".join(_SPECIAL_TEXT.sub(" ", text).split())
        return text

    def _text_ids(self, *groups: list[str]):
        """BLEU ids for texts: ``tokenize`` if given, else words and punctuation mapped to per-call ids."""
        if self.tokenize is not None:
            encode = self.tokenize
        else:
            vocab: dict[str, int] = {}

            def encode(text: str) -> list[int]:
                return [vocab.setdefault(w, len(vocab)) for w in _WORDS.findall(text)]

        out = []
        for texts in groups:
            out.extend(as_padded([list(encode(t)) for t in texts]))
        return out

    def _bleu_pair(self, gen, gen_len, ref, ref_len, sav, sav_len) -> tuple[torch.Tensor, torch.Tensor]:
        """BLEU(G, R) and BLEU(G, S) in one vectorised call (only those with a non-zero factor)."""
        cfg = self.config
        need_ref, need_sav = cfg.bleu_reference > 0, cfg.bleu_saved > 0
        zeros = torch.zeros(gen.shape[0], dtype=torch.float64, device=gen.device)
        kwargs = dict(weights=cfg.bleu_weights, smoothing=cfg.smoothing)
        if need_ref and need_sav:
            width = max(ref.shape[1], sav.shape[1])
            targets = torch.stack([_pad_to(ref, width), _pad_to(sav, width)], dim=1)  # [B, 2, width]
            both = token_bleu(
                gen, targets, hyp_lengths=gen_len, ref_lengths=torch.stack([ref_len, sav_len], dim=1),
                per_reference=True, **kwargs,
            )  # fmt: skip  # [B, 2]
            return both[:, 0], both[:, 1]
        if need_ref:
            return token_bleu(gen, ref, hyp_lengths=gen_len, ref_lengths=ref_len, **kwargs), zeros
        if need_sav:
            return zeros, token_bleu(gen, sav, hyp_lengths=gen_len, ref_lengths=sav_len, **kwargs)
        return zeros, zeros

    def _combine(
        self, bleu_ref, bleu_sav, e_gen, e_ref, e_sav, gen_len, ref_len, modes, running_mean, running_mean_mask,
        memory: dict[str, torch.Tensor],
    ) -> RewardOutput:
        cfg = self.config
        device, batch = e_gen.device, e_gen.shape[0]
        mode_codes = _mode_codes(modes, batch, device)
        negative, long_range = mode_codes == 2, mode_codes == 1
        cos_ref = _cos(e_gen, e_ref)
        cos_sav = _cos(e_gen, e_sav) if e_sav is not None else torch.zeros_like(cos_ref)  # no weight: not embedded
        mean, has_mean = _running_mean_batch(running_mean, running_mean_mask, batch, e_gen)
        cos_mean = torch.where(has_mean, _cos(e_gen, mean), torch.zeros_like(cos_ref))
        has_mean = has_mean & ~negative  # negative mode scores the saved data only
        bleu_ref, bleu_sav = bleu_ref.float(), bleu_sav.float()

        sav_bleu_term = torch.where(negative, 1 - bleu_sav, bleu_sav)
        bleu = cfg.bleu_reference * bleu_ref + cfg.bleu_saved * sav_bleu_term
        sav_cos_term = torch.where(negative, 1 - cos_sav, cos_sav)
        mean_term = torch.where(long_range, 1 - cos_mean, cos_mean)
        cosine_first = cfg.cosine_reference_first * cos_ref + cfg.cosine_saved_first * sav_cos_term
        cosine_later = (
            cfg.cosine_reference * cos_ref + cfg.cosine_saved * sav_cos_term + cfg.cosine_running_mean * mean_term
        )
        cosine = torch.where(has_mean, cosine_later, cosine_first)
        length = length_score(gen_len, ref_len, cfg.overlong_penalty).float().to(device)
        total = cfg.bleu_weight * bleu + cfg.cosine_weight * cosine + cfg.length_weight * length
        if memory:  # memory term where a row has one; elsewhere the other weights renormalised
            score = memory["memory"].to(device)
            present = ~torch.isnan(score) & ~negative
            total = torch.where(present, total + cfg.memory_weight * score.nan_to_num(0.0),
                                total / (1 - cfg.memory_weight))
            memory = {k: torch.where(present, v.to(device), math.nan) for k, v in memory.items()}
        reward = cfg.scale * total.clamp(0, 1)
        components = {
            "bleu_reference": bleu_ref,
            "bleu_saved": bleu_sav,
            "cosine_reference": cos_ref,
            **({"cosine_saved": cos_sav} if e_sav is not None else {}),
            "cosine_running_mean": cos_mean,
            "length": length,
            "bleu": bleu,
            "cosine": cosine,
            **memory,
        }
        return RewardOutput(reward=reward, components=components)


def _id_rows(ids: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [row[:n] for row, n in zip(ids.tolist(), lengths.tolist())]


def _pad_to(ids: torch.Tensor, width: int) -> torch.Tensor:
    return ids if ids.shape[1] == width else torch.nn.functional.pad(ids, (0, width - ids.shape[1]))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of L2-normalised rows, clipped at 0 (anti-correlated answers earn nothing, never less)."""
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return (a * b).sum(dim=-1).clamp(0, 1)


def _mode_codes(modes: str | Sequence[str], batch: int, device) -> torch.Tensor:
    """0 standard, 1 long_range, 2 negative, ``[B]``."""
    if isinstance(modes, str):  # one mode for the whole batch: no per-sample Python loop
        if modes not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {modes!r}")
        return torch.full((batch,), MODES.index(modes), dtype=torch.long, device=device)
    if len(modes) != batch:
        raise ValueError(f"got {len(modes)} modes for a batch of {batch}")
    for i, m in enumerate(modes):
        if m not in MODES:
            raise ValueError(f"mode of sample {i} must be one of {MODES}, got {m!r}")
    return torch.tensor([MODES.index(m) for m in modes], dtype=torch.long, device=device)


def _running_mean_batch(running_mean, mask, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise the running-mean argument to ``[B, E]`` and a ``[B]`` bool mask of rows that have one."""
    dim = like.shape[1]
    if running_mean is None:
        return torch.zeros_like(like), torch.zeros(batch, dtype=torch.bool, device=like.device)
    if isinstance(running_mean, torch.Tensor):
        if running_mean.shape != (batch, dim):
            raise ValueError(f"running_mean must have shape ({batch}, {dim}), got {tuple(running_mean.shape)}")
        values = running_mean.to(like.device, torch.float32)
        present = torch.ones(batch, dtype=torch.bool, device=like.device)
    else:
        if len(running_mean) != batch:
            raise ValueError(f"got {len(running_mean)} running means for a batch of {batch}")
        rows = [
            torch.zeros(dim) if m is None else torch.as_tensor(m, dtype=torch.float32).reshape(-1).cpu()
            for m in running_mean
        ]
        for i, r in enumerate(rows):
            if r.numel() != dim:
                raise ValueError(f"running mean of sample {i} has {r.numel()} values, expected {dim}")
        values = torch.stack(rows).to(like.device)
        present = torch.tensor([m is not None for m in running_mean], dtype=torch.bool, device=like.device)
    if mask is not None:
        present = present & torch.as_tensor(mask, dtype=torch.bool, device=like.device)
    return values, present
