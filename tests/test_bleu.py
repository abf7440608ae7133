"""Token-id BLEU must equal NLTK's sentence_bleu, for every smoothing method we offer."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from rxmrl.rewards import token_bleu

_SMOOTH = SmoothingFunction()
NLTK_METHODS = {"none": None, "method1": _SMOOTH.method1, "method3": _SMOOTH.method3, "method4": _SMOOTH.method4}


def nltk_bleu(references, hypothesis, weights, smoothing):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # method0 warns on zero n-gram overlaps
        return sentence_bleu(references, hypothesis, weights=weights, smoothing_function=NLTK_METHODS[smoothing])


@st.composite
def bleu_batches(draw):
    vocab = draw(st.sampled_from([1, 2, 3, 6, 40]))
    tokens = st.integers(0, vocab - 1)
    size = draw(st.integers(1, 6))
    hyps = [draw(st.lists(tokens, max_size=draw(st.sampled_from([0, 1, 2, 3, 20])))) for _ in range(size)]
    refs = [
        [draw(st.lists(tokens, max_size=draw(st.sampled_from([0, 1, 2, 20])))) for _ in range(draw(st.integers(1, 3)))]
        for _ in range(size)
    ]
    order = draw(st.integers(1, 5))
    weights = tuple(draw(st.floats(0.0, 1.0)) for _ in range(order))
    return hyps, refs, weights


@pytest.mark.parametrize("smoothing", list(NLTK_METHODS))
@settings(max_examples=60, deadline=None)
@given(batch=bleu_batches())
def test_token_bleu_equals_nltk_sentence_bleu(smoothing, batch):
    hyps, refs, weights = batch
    got = token_bleu(hyps, refs, weights=weights, smoothing=smoothing).tolist()
    expected = [nltk_bleu(r, h, weights, smoothing) for h, r in zip(hyps, refs)]
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("smoothing", list(NLTK_METHODS))
@pytest.mark.parametrize(
    "hyp, refs",
    [
        ([], [[1, 2, 3]]),  # empty hypothesis
        ([7], [[7, 8, 9]]),  # one token that matches: method4 leaves higher orders out of the mean
        ([5], [[7, 8]]),  # one token that does not match
        ([1, 2, 3], [[]]),  # empty reference
        ([1, 2, 3, 4], [[1, 2], [1, 2, 3, 4, 5, 6]]),  # tie in closest reference length
        ([3, 3, 3, 3, 3], [[3, 3]]),  # clipping
    ],
)
def test_edge_cases_equal_nltk(smoothing, hyp, refs):
    for weights in [(0.5, 0.5), (0.25, 0.25, 0.25, 0.25)]:
        got = float(token_bleu([hyp], [refs], weights=weights, smoothing=smoothing)[0])
        assert got == pytest.approx(nltk_bleu(refs, hyp, weights, smoothing), abs=1e-6)


def test_padded_tensors_equal_id_lists_and_padding_value_is_ignored():
    torch.manual_seed(0)
    hyp_len = torch.randint(0, 30, (16,))
    ref_len = torch.randint(1, 30, (16,))
    hyp = torch.randint(0, 9, (16, 30))
    ref = torch.randint(0, 9, (16, 30))
    hyp_padded = hyp.masked_fill(torch.arange(30) >= hyp_len.unsqueeze(1), -100)
    from_tensors = token_bleu(hyp_padded, ref, hyp_lengths=hyp_len, ref_lengths=ref_len, smoothing="method1")
    lists_h = [h[:n].tolist() for h, n in zip(hyp, hyp_len)]
    lists_r = [r[:n].tolist() for r, n in zip(ref, ref_len)]
    assert torch.equal(from_tensors, token_bleu(lists_h, lists_r, smoothing="method1"))


def test_large_vocabulary_high_order_keys_do_not_collide():
    # 4-grams over ids near 2**40 overflow a naive packing; keys must be renumbered instead
    big = 2**40
    hyp = [big + 1, big + 2, big + 3, big + 4, big + 5]
    refs = [[big + 1, big + 2, big + 3, big + 4, 9]]
    got = float(token_bleu([hyp], [refs], smoothing="none")[0])
    assert got == pytest.approx(nltk_bleu(refs, hyp, (0.25,) * 4, "none"), abs=1e-9)


def test_batch_of_256_by_256_tokens_matches_nltk_on_a_sample():
    torch.manual_seed(1)
    hyp, ref = torch.randint(0, 50, (256, 256)), torch.randint(0, 50, (256, 256))
    got = token_bleu(hyp, ref, weights=(0.5, 0.5), smoothing="method4")
    for i in range(0, 256, 51):
        assert float(got[i]) == pytest.approx(nltk_bleu([ref[i].tolist()], hyp[i].tolist(), (0.5, 0.5), "method4"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(smoothing="method2"), "smoothing must be one of"),
        (dict(weights=(0.5, -0.5)), "non-negative"),
        (dict(weights=()), "non-empty"),
    ],
)
def test_invalid_arguments_are_rejected_with_the_offending_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        token_bleu([[1, 2]], [[1, 2]], **kwargs)


def test_negative_token_ids_inside_the_length_are_rejected():
    with pytest.raises(ValueError, match="must be >= 0"):
        token_bleu(torch.tensor([[1, -3]]), torch.tensor([[1, 2]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    torch.manual_seed(2)
    hyp, ref = torch.randint(0, 20, (64, 64)), torch.randint(0, 20, (64, 64))
    for smoothing in NLTK_METHODS:
        cpu = token_bleu(hyp, ref, smoothing=smoothing)
        gpu = token_bleu(hyp.cuda(), ref.cuda(), smoothing=smoothing)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-9, rtol=0)


def test_per_reference_scores_each_target_separately():
    hyps = [[1, 2, 3, 4], [5, 6], []]
    targets = [[[1, 2, 3, 4], [9, 9, 2, 3]], [[5, 6, 7], [6, 5]], [[1], [2, 3]]]
    got = token_bleu(hyps, targets, weights=(0.5, 0.5), smoothing="method4", per_reference=True)
    assert got.shape == (3, 2)
    for i, (hyp, refs) in enumerate(zip(hyps, targets)):
        for j, ref in enumerate(refs):
            assert float(got[i, j]) == pytest.approx(nltk_bleu([ref], hyp, (0.5, 0.5), "method4"), abs=1e-9)
