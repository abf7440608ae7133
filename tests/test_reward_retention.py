"""The composite memory-retention reward: ranking, modes, presets, validation, bounds, batching."""

import math
import subprocess
import sys

import pytest
import torch

from rxmrl.rewards import (
    MemoryRetentionReward,
    RewardConfig,
    RunningMean,
    RxlmReward,
    SentenceEncoderSimilarity,
    TokenEmbeddingSimilarity,
    preset_reward,
)
from rxmrl.special_tokens import ANSWER_ID, BOS_ID, EOS_ID, PAD_ID, QUERY_ID

SAVED = "Tom has a red kite. He flies it in the park every Sunday with his sister Mia."
QUERY_ANSWER = "Tom flies his red kite in the park on Sundays with Mia."
UNRELATED = "The baker made bread and cakes for the village market this morning."
RANDOM = "zebra quantum lattice purple seventeen gravel oboe."


@pytest.fixture(scope="module")
def sentence_reward():
    # the encoder itself is loaded once per process (cached by load_sentence_encoder)
    return MemoryRetentionReward("default", SentenceEncoderSimilarity())


@pytest.fixture(scope="module")
def token_similarity():
    torch.manual_seed(0)
    return TokenEmbeddingSimilarity(torch.randn(1000, 32))


def answer_ids(body):
    return [ANSWER_ID, *body, EOS_ID]


def test_reference_answer_outscores_an_unrelated_and_a_random_answer(sentence_reward):
    out = sentence_reward.score_texts([QUERY_ANSWER, UNRELATED, RANDOM], [QUERY_ANSWER] * 3, [SAVED] * 3)
    reference, unrelated, random = out.reward.tolist()
    assert reference > unrelated + 2 and reference > random + 2
    assert reference == pytest.approx(sorted(out.reward.tolist())[-1])


def test_reference_ids_outscore_random_ids_with_the_frozen_token_embedding(token_similarity):
    torch.manual_seed(3)
    reward = MemoryRetentionReward("default", token_similarity)
    reference = torch.randint(7, 1000, (8, 20))
    saved = torch.cat([reference, torch.randint(7, 1000, (8, 10))], dim=1)
    random = torch.randint(7, 1000, (8, 20))
    assert bool((reward(reference, reference, saved).reward > reward(random, reference, saved).reward + 2).all())


def test_negative_mode_ranks_a_copy_of_the_saved_data_lowest(sentence_reward):
    saved_copy, new_topic_answer = SAVED, "Mia likes to paint flowers and birds at school."
    out = sentence_reward.score_texts(
        [saved_copy, new_topic_answer, UNRELATED], [new_topic_answer] * 3, [SAVED] * 3, modes="negative"
    )
    assert int(out.reward.argmin()) == 0
    standard = sentence_reward.score_texts([saved_copy], [new_topic_answer], [SAVED])
    assert float(out.reward[0]) < float(standard.reward[0])


def test_long_range_mode_inverts_the_running_mean_term(token_similarity):
    torch.manual_seed(4)
    reward = MemoryRetentionReward("default", token_similarity)
    answer, reference, saved = (torch.randint(7, 1000, (1, 12)) for _ in range(3))
    near_answer = reward.embed_ids(answer)  # a running mean equal to the answer itself
    standard = reward(answer, reference, saved, running_mean=near_answer, modes="standard")
    long_range = reward(answer, reference, saved, running_mean=near_answer, modes="long_range")
    assert float(standard.components["cosine_running_mean"][0]) == pytest.approx(1.0, abs=1e-5)
    # the 0.2 running-mean factor of the cosine group flips from full credit to none
    drop = reward.config.cosine_weight * reward.config.cosine_running_mean * reward.config.scale
    assert float(standard.reward[0] - long_range.reward[0]) == pytest.approx(drop, abs=1e-4)


def test_first_step_uses_first_step_cosine_factors(token_similarity):
    torch.manual_seed(5)
    reward = MemoryRetentionReward("default", token_similarity)
    answer, reference, saved = (torch.randint(7, 1000, (2, 12)) for _ in range(3))
    mean = torch.randn(2, 32)
    out = reward(answer, reference, saved, running_mean=[None, mean[1]])
    c = out.components
    assert float(c["cosine"][0]) == pytest.approx(0.5 * float(c["cosine_reference"][0]) + 0.5 * float(c["cosine_saved"][0]))
    later = 0.3 * c["cosine_reference"][1] + 0.5 * c["cosine_saved"][1] + 0.2 * c["cosine_running_mean"][1]
    assert float(c["cosine"][1]) == pytest.approx(float(later))
    assert float(c["cosine_running_mean"][0]) == 0.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(bleu_weight=0.7), "bleu_weight \\+ cosine_weight \\+ length_weight \\+ memory_weight must sum to 1"),
        (dict(memory_weight=1.0, bleu_weight=0, cosine_weight=0, length_weight=0), "memory_weight must lie in \\[0, 1\\)"),
        (dict(bleu_reference=0.9), "bleu_reference \\+ bleu_saved must sum to 1"),
        (dict(cosine_running_mean=0.5), "cosine_reference \\+ cosine_saved \\+ cosine_running_mean"),
        (dict(cosine_saved_first=-0.5, cosine_reference_first=1.5), "cosine_saved_first must be a finite non-negative"),
        (dict(smoothing="method7"), "smoothing must be one of"),
        (dict(scale=0.0), "scale must be a positive"),
        (dict(bleu_reference=2, bleu_saved=-1), "bleu_saved must be a finite non-negative"),
    ],
)
def test_factor_validation_names_the_offending_group(overrides, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig(**overrides)


def test_factor_validation_can_be_opted_out_and_the_reward_stays_in_range(token_similarity):
    config = RewardConfig(bleu_weight=1.0, cosine_weight=1.0, length_weight=1.0, validate_factors=False)
    reward = MemoryRetentionReward(config, token_similarity)
    ids = torch.randint(7, 1000, (2, 10))
    out = reward(ids, ids, ids)
    assert float(out.reward.max()) == pytest.approx(10.0)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown reward preset 'rxlm2'"):
        RewardConfig.preset("rxlm2")


def test_presets_hold_the_published_factors(token_similarity):
    # rxlm is the reference's own reward class, not a RewardConfig (tests/test_reward_reference_parity.py)
    with pytest.raises(ValueError, match="preset_reward\\('rxlm'"):
        RewardConfig.preset("rxlm")
    assert isinstance(preset_reward("rxlm", token_similarity), RxlmReward)
    assert isinstance(preset_reward("rxnn-len", token_similarity), MemoryRetentionReward)
    rxnn = RewardConfig.preset("rxnn-len")
    assert (rxnn.bleu_weight, rxnn.cosine_weight, rxnn.length_weight) == (0.4, 0.5, 0.1)
    assert (rxnn.bleu_reference, rxnn.bleu_saved, rxnn.cosine_reference_first, rxnn.cosine_saved_first) == (
        0.4, 0.6, 0.35, 0.65,
    )  # fmt: skip
    assert RewardConfig.preset("default").strip_special_tokens


def test_rxlm_counts_special_tokens_and_default_strips_them(token_similarity):
    torch.manual_seed(6)
    a, b = torch.randint(7, 1000, (2, 6)).tolist()
    unrelated = [answer_ids(a) + [PAD_ID] * 6]
    reference = [answer_ids(b) + [PAD_ID] * 6]
    rxlm = preset_reward("rxlm", token_similarity)(unrelated, reference, reference)
    default = MemoryRetentionReward("default", token_similarity)(unrelated, reference, reference)
    # [A] ... [EOS] + padding matches between any two answers: BLEU credit for nothing
    assert float(rxlm.components["bleu_reference"][0]) > 0.3
    assert float(default.components["bleu_reference"][0]) == 0.0


@pytest.mark.parametrize("preset", ["default", "rxlm", "rxnn-len"])
def test_reward_stays_within_scale_for_adversarial_ids(preset, token_similarity):
    reward = preset_reward(preset, token_similarity)
    torch.manual_seed(7)
    cases = [
        ([], [5, 6], [7]),  # empty answer
        ([PAD_ID] * 10, [PAD_ID] * 10, [PAD_ID] * 10),  # all padding
        ([BOS_ID, QUERY_ID, ANSWER_ID, EOS_ID], [], []),  # only special tokens, empty targets
        (torch.randint(0, 1000, (4000,)).tolist(), [9, 10], [11]),  # very long
        ([9, 10], [9, 10], [9, 10]),  # perfect copy
    ]
    for modes in ["standard", "long_range", "negative"]:
        out = reward(*map(list, zip(*cases)), modes=modes, running_mean=[None, torch.randn(32), None, torch.randn(32), None])
        assert torch.isfinite(out.reward).all() and bool(((out.reward >= 0) & (out.reward <= 10)).all())
        for name, value in out.components.items():
            assert bool(((value >= 0) & (value <= 1 + 1e-6)).all()), name


def test_reward_stays_within_scale_for_adversarial_texts(sentence_reward):
    texts = ["", "[PAD] [PAD] [EOS]", "ünïcödé 🚀 日本語のテキスト " * 3, "word " * 2000, SAVED]
    out = sentence_reward.score_texts(texts, texts[::-1], [SAVED] * 5, modes=["standard", "negative", "long_range", "standard", "negative"])
    assert torch.isfinite(out.reward).all() and bool(((out.reward >= 0) & (out.reward <= 10)).all())


def test_batched_scoring_equals_scoring_each_sample_alone(token_similarity):
    torch.manual_seed(8)
    reward = MemoryRetentionReward("default", token_similarity)
    batch = 6
    lengths = [torch.randint(0, 15, (batch,)) for _ in range(3)]
    gen, ref, sav = (torch.randint(0, 1000, (batch, 15)) for _ in range(3))
    modes = ["standard", "long_range", "negative", "standard", "long_range", "negative"]
    means = [None, torch.randn(32), torch.randn(32), torch.randn(32), None, None]
    together = reward(gen, ref, sav, generated_lengths=lengths[0], reference_lengths=lengths[1],
                      saved_lengths=lengths[2], modes=modes, running_mean=means)  # fmt: skip
    for i in range(batch):
        alone = reward(
            [gen[i, : lengths[0][i]].tolist()], [ref[i, : lengths[1][i]].tolist()], [sav[i, : lengths[2][i]].tolist()],
            modes=[modes[i]], running_mean=[means[i]],
        )  # fmt: skip
        assert float(alone.reward[0]) == pytest.approx(float(together.reward[i]), abs=1e-5)
        for name in together.components:
            assert float(alone.components[name][0]) == pytest.approx(float(together.components[name][i]), abs=1e-5)


def test_batched_text_scoring_equals_single_with_the_sentence_encoder(sentence_reward):
    gens, refs = [QUERY_ANSWER, UNRELATED, RANDOM], [QUERY_ANSWER, QUERY_ANSWER, SAVED]
    together = sentence_reward.score_texts(gens, refs, [SAVED] * 3, modes=["standard", "negative", "long_range"])
    for i, mode in enumerate(["standard", "negative", "long_range"]):
        alone = sentence_reward.score_texts([gens[i]], [refs[i]], [SAVED], modes=mode)
        assert float(alone.reward[0]) == pytest.approx(float(together.reward[i]), abs=1e-4)


def test_sentence_encoder_embeds_only_the_generated_answers_once_targets_are_cached(monkeypatch):
    backend = SentenceEncoderSimilarity()
    reward = MemoryRetentionReward("default", backend)
    reward.score_texts(["first answer"], [QUERY_ANSWER], [SAVED])
    encoded = []
    original = backend._encode
    monkeypatch.setattr(backend, "_encode", lambda texts: encoded.append(list(texts)) or original(texts))
    reward.score_texts(["second answer", "third answer"], [QUERY_ANSWER] * 2, [SAVED] * 2)
    assert encoded == [["second answer", "third answer"]]


def test_a_shared_cache_all_backend_encodes_each_answer_once_under_every_reward(monkeypatch):
    # the audit scores every case's answers under each preset with one backend
    backend = SentenceEncoderSimilarity(cache_all=True)
    rewards = [MemoryRetentionReward("default", backend), MemoryRetentionReward("rxnn-len", backend)]
    encoded = []
    original = backend._encode
    monkeypatch.setattr(backend, "_encode", lambda texts: encoded.append(list(texts)) or original(texts))
    first = [reward.score_texts(["an answer"], [QUERY_ANSWER], [SAVED]) for reward in rewards]
    assert sorted(t for batch in encoded for t in batch) == sorted({"an answer", QUERY_ANSWER, SAVED})
    encoded.clear()
    again = [reward.score_texts(["an answer"], [QUERY_ANSWER], [SAVED]) for reward in rewards]
    assert encoded == []
    for a, b in zip(first, again):
        assert float(a.reward[0]) == float(b.reward[0])


def test_sentence_encoder_scores_ids_through_decode():
    vocab = {7: "tom", 8: "flies", 9: "kite", 10: "bread"}
    backend = SentenceEncoderSimilarity(decode=lambda ids: " ".join(vocab[i] for i in ids))
    reward = MemoryRetentionReward("default", backend)
    out = reward([answer_ids([7, 8, 9]), answer_ids([10])], [answer_ids([7, 8, 9])] * 2, [[BOS_ID, 7, 9]] * 2)
    assert float(out.reward[0]) > float(out.reward[1])


def test_running_mean_follows_the_update_rule_and_resets():
    mean = RunningMean()
    first, second = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.equal(mean.update(first), first)
    torch.testing.assert_close(mean.update(second), 0.8 * second + 0.2 * first)
    mean.reset()
    assert mean.value is None


def test_token_embedding_backend_is_a_frozen_copy():
    weight = torch.nn.Parameter(torch.randn(20, 4))
    backend = TokenEmbeddingSimilarity(weight)
    before = backend.embed_ids([[3, 4]]).clone()
    with torch.no_grad():
        weight.add_(5.0)
    torch.testing.assert_close(backend.embed_ids([[3, 4]]), before)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 20\)"):
        backend.embed_ids([[25]])


def test_importing_rewards_does_not_load_the_sentence_encoder():
    code = "import sys, rxmrl.rewards; print('sentence_transformers' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_strip_ids_removes_special_tokens_and_padding_keeping_order():
    from rxmrl.rewards import strip_ids

    ids = torch.tensor([[BOS_ID, QUERY_ID, 9, ANSWER_ID, 10, 11, EOS_ID, PAD_ID], [12, PAD_ID, 13, 14, 0, 0, 0, 0]])
    stripped, lengths = strip_ids(ids, torch.tensor([8, 3]), {PAD_ID, BOS_ID, EOS_ID, QUERY_ID, ANSWER_ID})
    assert lengths.tolist() == [3, 2]
    assert stripped[0, :3].tolist() == [9, 10, 11] and stripped[1, :2].tolist() == [12, 13]


def test_running_mean_folds_only_the_rows_asked_and_starts_each_row_with_its_first_embedding():
    mean = RunningMean(0.8)
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    mean.update(first, rows=torch.tensor([True, False, True]))  # row 1 (long range, step 1) has no mean yet
    assert mean.present.tolist() == [True, False, True]
    second = torch.tensor([[0.0, 1.0], [3.0, 3.0], [0.0, 0.0]])
    value = mean.update(second, rows=torch.tensor([True, True, False]))
    torch.testing.assert_close(value[0], 0.8 * second[0] + 0.2 * first[0])  # decayed
    torch.testing.assert_close(value[1], second[1])  # its first fold: m <- e, not a decay towards zeros
    torch.testing.assert_close(value[2], first[2])  # not asked: unchanged
    assert mean.present.all()
