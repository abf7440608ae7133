"""The BPE tokenizer: fixed special ids, exact round trips, atomic specials, the interaction format."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

from rxmrl import special_tokens as st
from rxmrl.data import default_tokenizer
from rxmrl.tokenizer import RxTokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RXMRL_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield default_tokenizer(vocab_size=2048)


def test_special_tokens_have_the_shared_fixed_ids(tokenizer):
    for token_id, token in enumerate(st.SPECIAL_TOKENS):
        assert tokenizer.tokenizer.token_to_id(token) == token_id
    hf = tokenizer.to_hf()
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id, hf.mask_token_id) == (
        st.PAD_ID, st.BOS_ID, st.EOS_ID, st.MASK_ID)


@pytest.mark.parametrize("text", [
    "Lily's ball was red.",
    "  Two  spaces,\ttabs\nand new lines!  ",
    "Ünïcode, emoji 😀 and words the story world never used: quantum chromodynamics?",
    "",
])
def test_decode_round_trips_text_exactly(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=hst.text(alphabet=hst.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_unicode_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=False) == text


def test_special_tokens_in_text_stay_atomic(tokenizer):
    ids = tokenizer.encode("Hi [Q]there[A] you[EOS]")
    assert st.QUERY_ID in ids and st.ANSWER_ID in ids and st.EOS_ID in ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == "Hi [Q]there[A] you[EOS]"
    assert tokenizer.decode(ids) == "Hi there you"
    assert all(t not in st.SPECIAL_TOKEN_IDS for t in tokenizer.encode("Q A BOS EOS [ ] PAD"))


def test_query_and_answer_formats(tokenizer):
    words = tokenizer.encode("Lily")
    assert tokenizer.encode_query("Lily") == [st.BOS_ID, st.QUERY_ID, *words]
    assert tokenizer.encode_answer("Lily") == [st.ANSWER_ID, *words, st.EOS_ID]
    assert tokenizer.encode_prompt("Lily") == [st.BOS_ID, st.QUERY_ID, *words, st.ANSWER_ID]
    prompts = tokenizer.encode_queries(["Lily", "Lily Lily"], add_answer_marker=True)
    assert prompts.input_ids[0].tolist()[:len(words) + 3] == tokenizer.encode_prompt("Lily")



def test_batched_queries_and_answers_equal_single_ones(tokenizer):
    texts = ["Lily", "", "What colour was the kite that Tom found?"]
    assert tokenizer.encode_query_batch(texts) == [tokenizer.encode_query(t) for t in texts]
    assert tokenizer.encode_answer_batch(texts) == [tokenizer.encode_answer(t) for t in texts]
    assert tokenizer.encode_answer_batch([""]) == [[st.ANSWER_ID, st.EOS_ID]]


def test_the_baseline_history_is_the_interaction_format_without_per_turn_bos(tokenizer):
    from rxmrl.baseline.data import completion_ids, query_ids, turn_ids
    from rxmrl.data import Interaction

    q, a = tokenizer.encode("Who?"), tokenizer.encode("Tom.")
    assert turn_ids(tokenizer, Interaction("Who?", "Tom.")) == [st.QUERY_ID, *q, st.ANSWER_ID, *a, st.EOS_ID]
    assert query_ids(tokenizer, "Who?") == [st.QUERY_ID, *q, st.ANSWER_ID]
    assert completion_ids(tokenizer, "Tom.") == [*a, st.EOS_ID]

def test_interaction_is_padded_with_masks_on_the_answer(tokenizer):
    query, answer = "What colour was Lily's ball?", "Lily's ball was red."
    encoded = tokenizer.encode_interaction(query, answer, max_length=64)
    q, a = tokenizer.encode_query(query), tokenizer.encode_answer(answer)
    assert encoded.input_ids == q + a + [st.PAD_ID] * (64 - len(q) - len(a))
    assert sum(encoded.attention_mask) == len(q) + len(a)
    assert [i for i, m in zip(encoded.input_ids, encoded.answer_mask) if m] == a[1:]  # answer tokens + [EOS]
    assert not encoded.truncated


def test_overlong_interaction_is_cut_and_flagged(tokenizer):
    encoded = tokenizer.encode_interaction("Tell me a story.", "word " * 100, max_length=16)
    assert len(encoded.input_ids) == 16 and encoded.truncated and st.EOS_ID not in encoded.input_ids


def test_batched_interactions_equal_single_ones(tokenizer):
    queries, answers = ["Who?", "What colour was the kite that Tom found?"], ["Tom.", "The kite was blue."]
    batch = tokenizer.encode_interactions(queries, answers, max_length=20)
    assert batch.input_ids.shape == batch.answer_mask.shape == (2, 20) and batch.input_ids.dtype == torch.long
    for row, (q, a) in enumerate(zip(queries, answers)):
        single = tokenizer.encode_interaction(q, a, 20)
        assert batch.input_ids[row].tolist() == single.input_ids
        assert batch.attention_mask[row].tolist() == single.attention_mask
        assert batch.answer_mask[row].tolist() == single.answer_mask
    prompts = tokenizer.encode_queries(queries)
    assert prompts.input_ids[0, :2].tolist() == [st.BOS_ID, st.QUERY_ID]
    assert prompts.input_ids[0, -1].item() == st.PAD_ID and prompts.attention_mask.sum(1).tolist() == [
        len(tokenizer.encode_query(q)) for q in queries]


def test_saved_tokenizer_loads_in_transformers(tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer.save(tmp_path)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    text = "Tom and his dog played tag [EOS]"
    assert hf.encode(text) == tokenizer.encode(text)
    assert RxTokenizer.load(tmp_path).encode(text) == tokenizer.encode(text)


def test_default_tokenizer_is_cached(tokenizer, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("RXMRL_CACHE", str(tmp_path))
    default_tokenizer(vocab_size=2048)  # trains and caches in the fresh folder

    start = time.perf_counter()
    again = default_tokenizer(vocab_size=2048)
    assert time.perf_counter() - start < 0.5
    assert again.tokenizer.to_str() == tokenizer.tokenizer.to_str()
    assert again.vocab_size == tokenizer.vocab_size <= 2048


def test_training_is_deterministic():
    texts = [f"Lily had {n} red balls and {n + 1} blue kites." for n in range(200)]
    assert train_tokenizer(texts, 400).tokenizer.to_str() == train_tokenizer(texts, 400).tokenizer.to_str()


def test_training_on_a_custom_corpus_compresses_its_words():
    texts = ["the quick brown fox jumps over the lazy dog"] * 50
    trained = train_tokenizer(texts, vocab_size=300)
    assert len(trained.encode("the quick brown fox")) < len("the quick brown fox".encode())
    with pytest.raises(ValueError, match="vocab_size=10: expected at least 263"):
        train_tokenizer(texts, vocab_size=10)


def test_truncation_report_counts_tokens_as_the_interaction_format_does(tokenizer):
    from rxmrl.data import load_curriculum

    data = load_curriculum(steps=4, num_episodes=20, tokenizer=tokenizer, max_length=40)
    lengths = [len(tokenizer.encode_query(i.query)) + len(tokenizer.encode_answer(i.answer))
               for episode in data for i in episode.all_interactions()]
    assert data.truncation.total == len(lengths) == 100
    assert data.truncation.interactions == sum(n > 40 for n in lengths) > 0
    assert data.truncation.longest_interaction == max(lengths)
    assert len(data) == 20  # counted, not dropped
