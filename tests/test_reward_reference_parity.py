"""Preset ``rxlm`` is rxlm 0.3.80's ``MrlRewardModel``: every reward it recorded is reproduced.

``tests/data/rxlm_reward_fixture.json`` was written by ``experiments/parity/make_rxlm_reward_fixture.py``
in the reference's own virtualenv: one case per (config, mode), five steps each without a running-mean
reset, ``prev_data`` None on steps 0 and 3. The running mean is driven here as the environments drive it:
``RunningMean(reward.running_mean_new_weight)`` fed with ``reward.embed_ids`` of the previous interaction.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rxmrl.rewards.rxlm as rxlm_module
from rxmrl.rewards import (
    RXLM_PRESET,
    RunningMean,
    RxlmReward,
    RxlmRewardConfig,
    TokenEmbeddingSimilarity,
    preset_reward,
    token_bleu,
)

FIXTURE = json.loads((Path(__file__).parent / "data" / "rxlm_reward_fixture.json").read_text())
CASES = {(c["name"], c["mode"]): c for c in FIXTURE["cases"]}
TOLERANCE = 1e-5  # x rewards_scale


def padded(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Recorded ``{"input_ids", "attention_mask"}`` as ids and lengths (the masks are right padding)."""
    ids, mask = torch.tensor(batch["input_ids"]), torch.tensor(batch["attention_mask"])
    lengths = mask.sum(dim=1)
    assert torch.equal(mask, (torch.arange(mask.shape[1]) < lengths.unsqueeze(1)).long())
    return ids, lengths


STEPS = [{k: None if v is None else padded(v) for k, v in step.items()} for step in FIXTURE["steps"]]


@pytest.fixture(scope="module")
def backend() -> TokenEmbeddingSimilarity:
    return TokenEmbeddingSimilarity(torch.tensor(FIXTURE["embedding"]))


def config_of(name: str, **overrides) -> RxlmRewardConfig:
    return RxlmRewardConfig(**{**FIXTURE["configs"][name], **overrides})


def replay(reward: RxlmReward, modes, rows=None, embed=None, running_mean=None) -> list[torch.Tensor]:
    """Rewards of every step, the running mean folded in as the environments do; ``rows`` repeats rows of
    each step's batch (to mix modes in one call)."""
    embed = embed or reward.embed_ids
    mean = running_mean if running_mean is not None else RunningMean(reward.running_mean_new_weight)
    take = (lambda t: t) if rows is None else (lambda t: t[rows])  # noqa: E731
    rewards = []
    for step in STEPS:
        if step["prev"] is not None:
            mean.update(embed(*step["prev"]))
        (gen, gen_len), (ref, ref_len), (sav, sav_len) = step["generated"], step["reference"], step["saved"]
        out = reward(take(gen), take(ref), take(sav), generated_lengths=take(gen_len),
                     reference_lengths=take(ref_len), saved_lengths=take(sav_len), modes=modes,
                     running_mean=None if step["prev"] is None else take(mean.value))  # fmt: skip
        rewards.append(out.reward)
    return rewards


def worst_error(case: dict, rewards: list[torch.Tensor]) -> float:
    recorded = torch.tensor(case["rewards"], dtype=torch.float64)
    return float((torch.stack(rewards).double() - recorded).abs().max())


@pytest.mark.parametrize("name, mode", sorted(CASES))
def test_every_recorded_reward_is_reproduced(backend, name, mode):
    config = config_of(name)
    error = worst_error(CASES[name, mode], replay(RxlmReward(config, backend), mode))
    assert error <= TOLERANCE * config.rewards_scale, f"{name}/{mode}: off by {error:.2e}"


@pytest.mark.parametrize("name", sorted(FIXTURE["configs"]))
def test_one_batch_mixing_the_three_modes_matches_the_records_of_each(backend, name):
    modes = ["standard", "long_range", "negative"]
    batch = len(CASES[name, "standard"]["rewards"][0])
    rows = torch.arange(batch).repeat(3)  # [3B]: the step's batch once per mode
    mixed = replay(RxlmReward(config_of(name), backend), [m for m in modes for _ in range(batch)], rows)
    for k, mode in enumerate(modes):
        part = [r[k * batch:(k + 1) * batch] for r in mixed]
        assert worst_error(CASES[name, mode], part) <= TOLERANCE * config_of(name).rewards_scale, mode


def test_the_fixture_sets_every_option_away_from_its_default():
    default = RxlmRewardConfig()
    changed = {key for config in FIXTURE["configs"].values() for key, value in config.items()
               if getattr(default, key) != (tuple(value) if isinstance(value, list) else value)}  # fmt: skip
    assert changed == {f.name for f in dataclasses.fields(RxlmRewardConfig)}


def test_preset_rxlm_is_the_reference_defaults_on_the_ten_point_scale(backend):
    reward = preset_reward("rxlm", backend)
    assert isinstance(reward, RxlmReward) and reward.config == RXLM_PRESET
    assert RXLM_PRESET == RxlmRewardConfig(rewards_scale=10.0)
    for mode in ("standard", "long_range", "negative"):
        recorded = CASES["defaults", mode]
        scaled = {**recorded, "rewards": [[10 * r for r in step] for step in recorded["rewards"]]}
        assert worst_error(scaled, replay(reward, mode)) <= TOLERANCE * 10


# ---- the fixture is discriminative: plausible mistakes miss it by far more than the tolerance ----


def test_a_running_mean_of_normalised_embeddings_misses_the_fixture(backend):
    reward = RxlmReward(config_of("defaults"), backend)
    normalised = lambda ids, lengths: F.normalize(reward.embed_ids(ids, lengths), dim=-1)  # noqa: E731
    errors = [worst_error(CASES["defaults", mode], replay(reward, mode, embed=normalised))
              for mode in ("standard", "long_range")]  # fmt: skip
    assert max(errors) > 100 * TOLERANCE


def test_smoothed_bleu_in_negative_mode_misses_the_fixture(backend, monkeypatch):
    smoothed = lambda *args, **kwargs: token_bleu(*args, **{**kwargs, "smoothing": "method4"})  # noqa: E731
    monkeypatch.setattr(rxlm_module, "token_bleu", smoothed)
    reward = RxlmReward(config_of("defaults"), backend)
    assert worst_error(CASES["defaults", "negative"], replay(reward, "negative")) > 100 * TOLERANCE
    assert worst_error(CASES["defaults", "standard"], replay(reward, "standard")) <= TOLERANCE  # only there


def test_ignoring_the_running_mean_decay_misses_the_fixture(backend):
    reward = RxlmReward(config_of("running_mean_decay"), backend)
    assert reward.running_mean_new_weight == pytest.approx(0.5)
    error = worst_error(CASES["running_mean_decay", "standard"], replay(reward, "standard", running_mean=RunningMean()))
    assert error > 100 * TOLERANCE


# ---- the interface the environments and trainers use ----


def test_components_name_the_terms_of_the_total(backend):
    config = config_of("len_max_negative")
    (gen, gen_len), (ref, ref_len), (sav, sav_len) = (STEPS[0][k] for k in ("generated", "reference", "saved"))
    out = RxlmReward(config, backend)(gen, ref, sav, generated_lengths=gen_len, reference_lengths=ref_len,
                                      saved_lengths=sav_len, modes="standard")  # fmt: skip
    c = out.components
    total = config.bleu_factor * c["bleu"] + config.cos_factor * c["cosine"] + config.len_factor * c["length"]
    torch.testing.assert_close(out.reward, total)
    assert set(c) == {"bleu", "bleu_reference", "cosine", "cosine_reference", "cosine_saved",
                      "cosine_running_mean", "length"}  # fmt: skip
    g = gen_len.float()  # max_rewarded_len 10 and neg_reward_len: g/10 below, 10/g at or past it
    torch.testing.assert_close(c["length"], torch.where(g < 10, g / 10, 10 / g.clamp_min(1)))
    assert float(c["length"][3]) == 0.0 and bool((gen_len > 10).any() & (gen_len < 10).any())


def test_extra_keywords_are_accepted_and_ignored(backend):
    reward = RxlmReward("rxlm", backend)
    ids = [[3, 4, 5], [6, 7]]
    plain = reward(ids, ids, ids)
    richer = reward(ids, ids, ids, memory_targets=[["a"], ["b"]], anything_else=1)
    torch.testing.assert_close(plain.reward, richer.reward)


def test_texts_are_scored_as_their_token_ids(backend):
    vocab = {"tom": 3, "has": 4, "a": 5, "red": 6, "kite": 7, "blue": 8}
    tokenize = lambda text: [vocab[w] for w in text.split()]  # noqa: E731
    reward = RxlmReward("rxlm", backend, tokenize=tokenize)
    texts = ["tom has a red kite", "a blue kite"]
    by_text = reward.score_texts(texts, texts[::-1], texts, modes="negative")
    by_ids = reward([tokenize(t) for t in texts], [tokenize(t) for t in texts[::-1]], [tokenize(t) for t in texts],
                    modes="negative")  # fmt: skip
    torch.testing.assert_close(by_text.reward, by_ids.reward)
    torch.testing.assert_close(reward.embed_texts(texts), reward.embed_ids([tokenize(t) for t in texts]))
    with pytest.raises(ValueError, match="pass tokenize"):
        RxlmReward("rxlm", TokenEmbeddingSimilarity(torch.randn(9, 4))).score_texts(texts, texts, texts)


def test_the_environment_keeps_the_running_mean_the_reward_asks_for():
    from rxmrl.envs import BatchedMrlEnv

    config = RxlmRewardConfig(running_mean_decay=0.5, rewards_scale=10.0)
    env = BatchedMrlEnv(2, steps=2, reward=config, similarity="random-embedding")
    start = env.reset(seed=0)
    assert isinstance(env.reward, RxlmReward) and env._running_mean.new_weight == 0.5
    env.step(start.query)
    env.step(start.query)  # folds the first interaction, un-normalised, into the running mean
    first = env.reward.embed_ids(start.saved_interaction.ids, start.saved_interaction.lengths)
    torch.testing.assert_close(env._running_mean.value, first)
    assert not torch.allclose(first.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(bleu_factor=0.7), "bleu_factor \\+ cos_factor must sum to 1"),
        (dict(neg_cos_factor=0.1), "neg_bleu_factor \\+ neg_cos_factor must sum to 1"),
        (dict(reward_len=True, len_factor=0.2, max_rewarded_len=5), "bleu_factor \\+ cos_factor \\+ len_factor"),
        (dict(bleu_first_ref_factor=0.9), "bleu_first_ref_factor \\+ bleu_first_saved_factor"),
        (dict(multi_cos_running_mean_factor=0.3), "multi_cos_ref_factor \\+ multi_cos_saved_factor"),
        (dict(reward_len=True, allow_not_summing_factors=True), "reward_len=True needs len_factor"),
        (dict(reward_len=True, len_factor=0.1, allow_not_summing_factors=True), "needs max_rewarded_len"),
        (dict(max_rewarded_len=0), "max_rewarded_len=0: expected an int >= 1"),
        (dict(bleu_mode="joint"), "bleu_mode='joint'"),
        (dict(running_mean_decay=1.5), "running_mean_decay=1.5"),
        (dict(bleu_ref_weights=()), "bleu_ref_weights=\\(\\)"),
        (dict(rewards_scale=0.0), "rewards_scale=0.0"),
    ],
)
def test_config_errors_name_the_option(overrides, message):
    with pytest.raises(ValueError, match=message):
        RxlmRewardConfig(**overrides)


def test_factor_sums_may_be_opted_out_and_then_the_total_is_not_clipped(backend):
    config = RxlmRewardConfig(bleu_factor=1.0, cos_factor=1.0, allow_not_summing_factors=True)
    ids = [[3, 4, 5, 6]]
    assert float(RxlmReward(config, backend)(ids, ids, ids).reward[0]) == pytest.approx(2.0, abs=1e-5)


def test_an_empty_answer_to_an_empty_reference_earns_the_full_length_term_not_nan(backend):
    config = RxlmRewardConfig(reward_len=True, target_len_as_ref=True, neg_reward_len=True, len_factor=0.2,
                              bleu_factor=0.4, cos_factor=0.4, neg_bleu_factor=0.4, neg_cos_factor=0.4)  # fmt: skip
    out = RxlmReward(config, backend)([[], [3, 4], [3]], [[], [], [3, 4]], [[5], [5], [5]])
    assert out.components["length"].tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert bool(torch.isfinite(out.reward).all())
