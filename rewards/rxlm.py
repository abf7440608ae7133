"""The reference framework's MRL reward, rxlm 0.3.80 ``MrlRewardModel``, reproduced exactly (preset ``rxlm``).

Written from the reference's behaviour (checked against a fixture it recorded), not from its code.
:class:`RxlmRewardConfig` has one field per ``MrlRewardModel`` option, under the same name, so a reference
config ports as ``RxlmRewardConfig(**kwargs)``; ``RxlmRewardConfig()`` holds the reference's defaults.
Preset ``rxlm`` is those defaults at ``rewards_scale=10``, on the 0-10 scale of the other presets (the
reward is linear in ``rewards_scale``).

Per step, with generated answer G, reference answer R, saved data S and, past the first step, the running
mean M of earlier interactions. ``e(x)`` is the masked mean of the token embeddings of x, *not* normalised
(``TokenEmbeddingSimilarity.mean_embeddings``); M is kept over these raw means, ``M <- (1 - decay)·e(prev) +
decay·M``, and normalised only inside the cosine ``c(x, y) = max(0, cos(e(x), e(y)))``.
``B_w(G; refs)`` is NLTK's sentence BLEU with n-gram weights w and smoothing method4; ``B⁰_w`` the same
without smoothing (NLTK's ``method0``: ~1e-154 where an order has no match, 0 without unigram matches).
Factors are the config fields: ``bleu_ref_factor`` is written ``bleu_ref``, ``multi_cos_saved_factor``
``multi_cos_saved``, and so on::

    BLEU term    standard, long_range                            negative
    no saved     B_wR(G; R)                                      B⁰_wR(G; R)
    separate     bleu_ref·B_wR(G; R) + bleu_saved·B_wS(G; S)     neg_bleu_ref·B_wR(G; R)
                 (bleu_first_ref, bleu_first_saved on a first       + neg_bleu_saved·(1 − B_wS(G; S))
                 step)
    combined     B_wR(G; {R, S})  (multi-reference)              as separate

    cosine term  first step, or use_running_mean off: cos_ref·c(G,R) + cos_saved·c(G,S)
                 standard:   multi_cos_ref·c(G,R) + multi_cos_saved·c(G,S) + multi_cos_running_mean·c(G,M)
                 long_range: the same with (1 − c(G,M)): the answer must come from S, away from recent turns
                 negative:   neg_cos_ref·c(G,R) + neg_cos_saved·(1 − c(G,S))   (no running mean)

    sim    = bleu_factor·BLEU + cos_factor·cos              (neg_bleu_factor, neg_cos_factor in negative mode)
    len    = g/t if g < t, else (t/g if neg_reward_len else 1);  g = |G|, t = |R| if target_len_as_ref
             else max_rewarded_len                          (only with reward_len)
    total  = sim + len_factor·len
    reward = rewards_scale · (2·total − 1 if tanh_reward_scale else total)      -- not clipped

wR = ``bleu_ref_weights``, wS = ``bleu_saved_weights``; ``bleu_saved``, ``bleu_saved_weights`` and
``bleu_mode`` matter only with ``bleu_with_saved_data``. The ``neg_bleu_factor``, ``neg_cos_factor``,
``neg_cos_ref_factor``, ``neg_cos_saved_factor`` and ``bleu_first_*`` fields default (None) to their
non-negative, non-first counterparts. A *first step* is a row without a running mean: the reference's
``prev_data is None`` (in its trainer: an episode's first step, and the step after a long-range topic
switch). That holds for the BLEU factors also when ``use_running_mean`` is off, so pass the running mean
(or its mask) anyway.

As in the reference, everything inside a row's length counts -- special tokens included -- and BLEU reads
the first ``length`` ids (the reference's ``ids[:mask.sum()]``; right padding assumed). Where the
reference divides 0 by 0 (an empty answer to an empty reference with ``target_len_as_ref`` and
``neg_reward_len``) the length term here is 1 (equal lengths), not NaN.

Unless ``allow_not_summing_factors``, the factor groups must sum to 1 as in the reference (here within
1e-6, not with float ``==``): ``bleu_factor + cos_factor (+ len_factor)``, the same with the negative
factors, ``bleu_ref + bleu_saved``, ``bleu_first_ref + bleu_first_saved``, ``cos_ref + cos_saved``,
``neg_cos_ref + neg_cos_saved``, ``neg_bleu_ref + neg_bleu_saved`` and the three ``multi_cos`` factors.

With a :class:`TokenEmbeddingSimilarity` (a frozen copy of the policy's embedding, as the reference uses the
live one) this is the reference; any other backend's ``embed_ids`` replaces ``e`` (no longer the reference).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from rxmrl.rewards.bleu import token_bleu
from rxmrl.rewards.id_reward import IdReward, PaddedTriple, RewardOutput
from rxmrl.rewards.ids import as_padded
from rxmrl.rewards.retention import _mode_codes, _running_mean_batch
from rxmrl.rewards.similarity import SentenceEncoderSimilarity, SimilarityBackend, TokenEmbeddingSimilarity, cosine

_SUM_TOLERANCE = 1e-6


def _or(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


@dataclass(frozen=True)
class RxlmRewardConfig:
    """``MrlRewardModel``'s options under their own names and defaults (equations: module docstring)."""

    bleu_with_saved_data: bool = False  # BLEU against the saved data too
    bleu_mode: Literal["separate", "combined"] = "separate"  # two BLEUs, or one multi-reference BLEU
    bleu_factor: float = 0.5
    bleu_ref_factor: float = 0.5
    bleu_saved_factor: float = 0.5
    bleu_first_ref_factor: float | None = None  # None: bleu_ref_factor
    bleu_first_saved_factor: float | None = None  # None: bleu_saved_factor
    cos_factor: float = 0.5
    cos_ref_factor: float = 0.5  # cosine factors without a running mean
    cos_saved_factor: float = 0.5
    multi_cos_ref_factor: float = 0.3  # cosine factors with a running mean
    multi_cos_saved_factor: float = 0.5
    multi_cos_running_mean_factor: float = 0.2
    neg_bleu_factor: float | None = None  # None: bleu_factor
    neg_cos_factor: float | None = None  # None: cos_factor
    neg_cos_ref_factor: float | None = None  # None: cos_ref_factor
    neg_cos_saved_factor: float | None = None  # None: cos_saved_factor
    neg_bleu_ref_factor: float = 0.5
    neg_bleu_saved_factor: float = 0.5
    allow_not_summing_factors: bool = False
    reward_len: bool = False  # add the length term
    neg_reward_len: bool = False  # answers at or past the target earn t/g instead of 1
    max_rewarded_len: int | None = None  # target length t (unless target_len_as_ref)
    target_len_as_ref: bool = False  # t = the reference's length
    len_factor: float | None = None  # needed with reward_len
    use_running_mean: bool = True
    running_mean_decay: float = 0.2  # M <- (1 - decay)·e + decay·M
    bleu_saved_weights: tuple[float, ...] = (0.5, 0.5)
    bleu_ref_weights: tuple[float, ...] = (0.5, 0.5)
    tanh_reward_scale: bool = False  # total -> 2·total − 1
    rewards_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("bleu_saved_weights", "bleu_ref_weights"):
            weights = tuple(float(w) for w in getattr(self, name))
            if not weights or any(w < 0 or not math.isfinite(w) for w in weights):
                raise ValueError(f"RxlmRewardConfig.{name}={weights}: expected non-empty finite weights >= 0")
            object.__setattr__(self, name, weights)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"RxlmRewardConfig.{field.name}={value}: expected a finite number")
        if self.bleu_mode not in ("separate", "combined"):
            raise ValueError(f"RxlmRewardConfig.bleu_mode={self.bleu_mode!r}: expected 'separate' or 'combined'")
        if not 0.0 <= self.running_mean_decay <= 1.0:
            raise ValueError(f"RxlmRewardConfig.running_mean_decay={self.running_mean_decay}: expected [0, 1]")
        if not self.rewards_scale > 0:
            raise ValueError(f"RxlmRewardConfig.rewards_scale={self.rewards_scale}: expected a positive number")
        if self.max_rewarded_len is not None and not (isinstance(self.max_rewarded_len, int)
                                                      and self.max_rewarded_len >= 1):  # fmt: skip
            raise ValueError(f"RxlmRewardConfig.max_rewarded_len={self.max_rewarded_len!r}: expected an int >= 1")
        if self.reward_len and self.len_factor is None:
            raise ValueError("RxlmRewardConfig: reward_len=True needs len_factor")
        if self.reward_len and not self.target_len_as_ref and self.max_rewarded_len is None:
            raise ValueError("RxlmRewardConfig: reward_len=True needs max_rewarded_len or target_len_as_ref=True")
        if not self.allow_not_summing_factors:
            self._check_sums()

    def _check_sums(self) -> None:
        length = (self.len_factor,) if self.reward_len else ()
        length_name = " + len_factor" if self.reward_len else ""
        groups = {
            f"bleu_factor + cos_factor{length_name}": (self.bleu_factor, self.cos_factor, *length),
            f"neg_bleu_factor + neg_cos_factor{length_name}": (*self.negative_factors, *length),
            "bleu_ref_factor + bleu_saved_factor": (self.bleu_ref_factor, self.bleu_saved_factor),
            "bleu_first_ref_factor + bleu_first_saved_factor": self.first_bleu_factors,
            "cos_ref_factor + cos_saved_factor": (self.cos_ref_factor, self.cos_saved_factor),
            "neg_cos_ref_factor + neg_cos_saved_factor": self.negative_cos_factors,
            "neg_bleu_ref_factor + neg_bleu_saved_factor": (self.neg_bleu_ref_factor, self.neg_bleu_saved_factor),
            "multi_cos_ref_factor + multi_cos_saved_factor + multi_cos_running_mean_factor": (
                self.multi_cos_ref_factor, self.multi_cos_saved_factor, self.multi_cos_running_mean_factor),
        }  # fmt: skip
        for name, factors in groups.items():
            if abs(sum(factors) - 1.0) > _SUM_TOLERANCE:
                raise ValueError(
                    f"RxlmRewardConfig: {name} must sum to 1 (within {_SUM_TOLERANCE}), got "
                    f"{' + '.join(map(str, factors))} = {sum(factors)}; rescale them or pass "
                    "allow_not_summing_factors=True"
                )

    @property
    def scale(self) -> float:
        """``rewards_scale``: the reward's top (``RewardConfig.scale``), for code that mixes other terms in."""
        return self.rewards_scale

    @property
    def first_bleu_factors(self) -> tuple[float, float]:
        """``(ref, saved)`` BLEU factors of a first step (``bleu_first_*``, defaulting to ``bleu_*``)."""
        return (_or(self.bleu_first_ref_factor, self.bleu_ref_factor),
                _or(self.bleu_first_saved_factor, self.bleu_saved_factor))  # fmt: skip

    @property
    def negative_factors(self) -> tuple[float, float]:
        """``(bleu, cosine)`` weights of negative mode (``neg_*_factor``, defaulting to the standard ones)."""
        return _or(self.neg_bleu_factor, self.bleu_factor), _or(self.neg_cos_factor, self.cos_factor)

    @property
    def negative_cos_factors(self) -> tuple[float, float]:
        """``(ref, saved)`` cosine factors of negative mode (``neg_cos_*``, defaulting to ``cos_*``)."""
        return (_or(self.neg_cos_ref_factor, self.cos_ref_factor),
                _or(self.neg_cos_saved_factor, self.cos_saved_factor))  # fmt: skip


RXLM_PRESET = RxlmRewardConfig(rewards_scale=10.0)  # the reference's defaults on the 0-10 scale


class RxlmReward(IdReward):
    """rxlm's ``MrlRewardModel`` with the call interface of :class:`MemoryRetentionReward`::

        reward = RxlmReward("rxlm", TokenEmbeddingSimilarity(policy_embedding_weight))
        out = reward(generated, reference, saved, generated_lengths=..., reference_lengths=...,
                     saved_lengths=..., modes="standard", running_mean=None, running_mean_mask=None)
        out.reward       # [B] float32, not clipped
        out.components   # bleu, cosine, bleu_reference, (bleu_saved), cosine_reference, cosine_saved,
                         # cosine_running_mean (0 without a mean), (length)

    Ids are right-padded ``[B, L]`` tensors with ``[B]`` lengths, or id lists; ``modes`` one mode or one per
    row. Rows without a running mean are first steps. Keep the running mean over ``embed_ids`` /
    ``embed_texts`` of this reward with ``RunningMean(reward.running_mean_new_weight)``: that is the
    reference's running-mean state (un-normalised means). Extra keyword arguments are accepted and ignored,
    so the reward plugs in wherever a richer reward is called. ``score_texts`` scores ``tokenize(text)``.
    """

    ignores_extra_keywords = True

    def __init__(self, config: RxlmRewardConfig | str = "rxlm", similarity: SimilarityBackend | None = None, *,
                 decode: Callable[[Sequence[int]], str] | None = None,
                 tokenize: Callable[[str], Sequence[int]] | None = None) -> None:
        if isinstance(config, str):
            if config != "rxlm":
                raise ValueError(f"RxlmReward builds preset 'rxlm' only, got {config!r}")
            config = RXLM_PRESET
        self.config = config
        self.similarity = similarity if similarity is not None else SentenceEncoderSimilarity(decode=decode)
        self.tokenize = tokenize if tokenize is not None else getattr(self.similarity, "encode", None)
        self.running_mean_new_weight = 1.0 - config.running_mean_decay  # what the environment's RunningMean uses

    # ---- embeddings (also used by the environment for the running mean) ----
    def embed_ids(self, ids, lengths: torch.Tensor | None = None, *, cache: bool = True) -> torch.Tensor:
        """``[B, E]`` un-normalised masked means of the token embeddings (the backend's embeddings otherwise)."""
        ids, lengths = as_padded(ids, lengths)
        if isinstance(self.similarity, TokenEmbeddingSimilarity):
            return self.similarity.mean_embeddings(ids, lengths).to(ids.device)
        return self.similarity.embed_ids(ids, lengths, cache=cache).to(ids.device)

    def embed_texts(self, texts: Sequence[str], *, cache: bool = True) -> torch.Tensor:
        """``embed_ids`` of ``tokenize(text)``."""
        return self.embed_ids(self._encode(texts), cache=cache)

    # ---- scoring ----
    def score_texts(self, generated: Sequence[str], reference: Sequence[str], saved: Sequence[str],
                    **kwargs) -> RewardOutput:  # fmt: skip
        """``score_ids`` on ``tokenize`` of each text (keywords as ``score_ids``)."""
        return self.score_ids(self._encode(generated), self._encode(reference), self._encode(saved), **kwargs)

    def _score(self, ids: PaddedTriple, modes, running_mean, running_mean_mask, memory_targets) -> RewardOutput:
        """Score B answers given as padded token ids (see the class docstring; ``memory_targets`` is ignored)."""
        cfg = self.config
        gen, gen_len, ref, ref_len, sav, sav_len = ids
        device, batch = gen.device, gen.shape[0]
        codes = _mode_codes(modes, batch, device)  # [B]: 0 standard, 1 long_range, 2 negative
        negative, long_range = codes == 2, codes == 1
        e_gen = self.embed_ids(gen, gen_len, cache=False)  # [B, E]
        e_ref, e_sav = self.embed_ids(ref, ref_len), self.embed_ids(sav, sav_len)
        mean, has_mean = _running_mean_batch(running_mean, running_mean_mask, batch, e_gen)
        components = self._bleu(gen, gen_len, ref, ref_len, sav, sav_len, negative, first=~has_mean)
        components.update(self._cosine(e_gen, e_ref, e_sav, mean, has_mean, negative, long_range))
        bleu, cos = components["bleu"], components["cosine"]
        neg_bleu_factor, neg_cos_factor = cfg.negative_factors
        total = torch.where(negative, neg_bleu_factor * bleu + neg_cos_factor * cos,
                            cfg.bleu_factor * bleu + cfg.cos_factor * cos)  # fmt: skip
        if cfg.reward_len:
            components["length"] = self._length(gen_len, ref_len)
            total = total + cfg.len_factor * components["length"]
        if cfg.tanh_reward_scale:
            total = 2 * total - 1
        return RewardOutput(reward=cfg.rewards_scale * total, components=components)

    # ---- internals ----
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.tokenize is None:
            raise ValueError("RxlmReward scores token ids: pass tokenize=(text -> ids) to score or embed texts")
        return [list(self.tokenize(t)) for t in texts]

    def _bleu(self, gen, gen_len, ref, ref_len, sav, sav_len, negative, first) -> dict[str, torch.Tensor]:
        """The BLEU term of each row's mode and the BLEUs it is made of, ``[B]`` float32 each."""
        cfg = self.config
        unsmoothed = negative if not cfg.bleu_with_saved_data else torch.zeros_like(negative)  # [B] bool
        bleu_ref = (_bleu_rows(gen, gen_len, ref, ref_len, cfg.bleu_ref_weights, "method4", ~unsmoothed)
                    + _bleu_rows(gen, gen_len, ref, ref_len, cfg.bleu_ref_weights, "none", unsmoothed))  # fmt: skip
        if not cfg.bleu_with_saved_data:
            return {"bleu": bleu_ref.float(), "bleu_reference": bleu_ref.float()}
        every = torch.ones_like(negative)
        bleu_sav = _bleu_rows(gen, gen_len, sav, sav_len, cfg.bleu_saved_weights, "method4", every)
        if cfg.bleu_mode == "combined":  # one BLEU against both: clipped by the larger count, closest length
            width = max(ref.shape[1], sav.shape[1])
            both = torch.stack([F.pad(ref, (0, width - ref.shape[1])), F.pad(sav, (0, width - sav.shape[1]))], 1)
            standard = _bleu_rows(gen, gen_len, both, torch.stack([ref_len, sav_len], 1), cfg.bleu_ref_weights,
                                  "method4", ~negative)  # fmt: skip
        else:
            (ref_first, sav_first), (ref_later, sav_later) = cfg.first_bleu_factors, (
                cfg.bleu_ref_factor, cfg.bleu_saved_factor)  # fmt: skip
            standard = torch.where(first, ref_first * bleu_ref + sav_first * bleu_sav,
                                   ref_later * bleu_ref + sav_later * bleu_sav)  # fmt: skip
        negative_term = cfg.neg_bleu_ref_factor * bleu_ref + cfg.neg_bleu_saved_factor * (1 - bleu_sav)
        bleu = torch.where(negative, negative_term, standard)
        return {"bleu": bleu.float(), "bleu_reference": bleu_ref.float(), "bleu_saved": bleu_sav.float()}

    def _cosine(self, e_gen, e_ref, e_sav, mean, has_mean, negative, long_range) -> dict[str, torch.Tensor]:
        """The cosine term of each row's mode and the clipped cosines it is made of, ``[B]`` float32 each."""
        cfg = self.config
        cos_ref, cos_sav = cosine(e_gen, e_ref).clamp_min(0), cosine(e_gen, e_sav).clamp_min(0)
        cos_mean = torch.where(has_mean, cosine(e_gen, mean).clamp_min(0), torch.zeros_like(cos_ref))
        plain = cfg.cos_ref_factor * cos_ref + cfg.cos_saved_factor * cos_sav
        mean_term = torch.where(long_range, 1 - cos_mean, cos_mean)
        with_mean = (cfg.multi_cos_ref_factor * cos_ref + cfg.multi_cos_saved_factor * cos_sav
                     + cfg.multi_cos_running_mean_factor * mean_term)  # fmt: skip
        standard = torch.where(has_mean, with_mean, plain) if cfg.use_running_mean else plain
        neg_ref, neg_sav = cfg.negative_cos_factors
        value = torch.where(negative, neg_ref * cos_ref + neg_sav * (1 - cos_sav), standard)
        return {"cosine": value, "cosine_reference": cos_ref, "cosine_saved": cos_sav, "cosine_running_mean": cos_mean}

    def _length(self, gen_len: torch.Tensor, ref_len: torch.Tensor) -> torch.Tensor:
        """``g/t`` below the target, ``t/g`` (``neg_reward_len``) or 1 at or past it; ``[B]`` float32."""
        cfg = self.config
        g = gen_len.double()
        t = ref_len.double() if cfg.target_len_as_ref else torch.full_like(g, float(cfg.max_rewarded_len))
        at_or_past = torch.where(g > 0, t / g.clamp_min(1), 1.0) if cfg.neg_reward_len else torch.ones_like(g)
        return torch.where(g >= t, at_or_past, g / t.clamp_min(1)).float()  # g < t: t >= 1


def _bleu_rows(gen, gen_len, targets, target_len, weights, smoothing, rows) -> torch.Tensor:
    """``token_bleu`` on the rows where ``rows`` holds, 0 elsewhere: ``[B]`` float64."""
    out = torch.zeros(gen.shape[0], dtype=torch.float64, device=gen.device)
    if not bool(rows.any()):
        return out
    if bool(rows.all()):
        return token_bleu(gen, targets, hyp_lengths=gen_len, ref_lengths=target_len, weights=weights,
                          smoothing=smoothing)  # fmt: skip
    index = rows.nonzero().squeeze(1)
    out[index] = token_bleu(gen[index], targets[index], hyp_lengths=gen_len[index], ref_lengths=target_len[index],
                            weights=weights, smoothing=smoothing)  # fmt: skip
    return out
