"""Specifications of the Reactive Transformer (tiny configs, CPU, a few seconds)."""

from __future__ import annotations

import os

import pytest
import torch

from rxmrl.model import (
    GREEDY,
    MEMORY_UPDATE_STARTED,
    MEMORY_UPDATED,
    PUBLISHED,
    ReactiveTransformer,
    RxTConfig,
    SamplingConfig,
    count_preset,
    count_parameters,
    get_preset,
    interaction_ids,
    written_interaction,
)
from rxmrl.special_tokens import ANSWER_ID, BOS_ID, EOS_ID, PAD_ID, QUERY_ID

TINY = RxTConfig(
    vocab_size=64, dim=32, num_layers=2, num_heads=4, query_heads=2, kv_heads=1, num_experts=4,
    experts_per_token=2, expert_dim=32, encoder_ff_dim=48, stm_slots=8,
)
QUERIES = [[BOS_ID, QUERY_ID, 10, 11, 12], [BOS_ID, QUERY_ID, 20], [BOS_ID, QUERY_ID, 30, 31, 32, 33, 34]]


def tiny_model(seed: int = 0, **changes) -> ReactiveTransformer:
    torch.manual_seed(seed)
    return ReactiveTransformer(TINY.replace(**changes)).eval()


def random_stm(model: ReactiveTransformer, batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    return torch.randn(batch, config.num_layers, config.stm_slots, config.dim, generator=generator)


def test_decoder_is_causal():
    model = tiny_model()
    stm = random_stm(model, 1)
    ids = torch.randint(7, 64, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = torch.randint(7, 64, (4,))
    logits, _ = model.decoder(ids, stm)
    logits_changed, _ = model.decoder(changed, stm)
    torch.testing.assert_close(logits[:, :8], logits_changed[:, :8])
    assert not torch.allclose(logits[:, 8:], logits_changed[:, 8:])


def test_stm_changes_decoder_logits():
    model = tiny_model()
    ids = torch.randint(7, 64, (1, 10))
    logits_a, _ = model.decoder(ids, random_stm(model, 1, seed=1))
    logits_b, _ = model.decoder(ids, random_stm(model, 1, seed=2))
    assert (logits_a - logits_b).abs().max() > 1e-3


def test_cached_generation_matches_uncached():
    model = tiny_model()
    stm = random_stm(model, 3)
    cached = model.generate(QUERIES, stm, max_new_tokens=24, use_cache=True)
    uncached = model.generate(QUERIES, stm, max_new_tokens=24, use_cache=False)
    assert torch.equal(cached.tokens, uncached.tokens)
    torch.testing.assert_close(cached.log_probs, uncached.log_probs, atol=1e-5, rtol=0)


def test_batched_generation_matches_one_by_one():
    model = tiny_model()
    stm = random_stm(model, 3)
    batched = model.generate(QUERIES, stm, max_new_tokens=16)
    for row, query in enumerate(QUERIES):
        single = model.generate([query], stm[row : row + 1], max_new_tokens=16)
        assert single.answers()[0] == batched.answers()[row]
        n = single.lengths[0]
        torch.testing.assert_close(single.log_probs[0, :n], batched.log_probs[row, :n], atol=1e-5, rtol=0)


def test_each_row_stops_at_its_own_eos():
    model = tiny_model()

    def eos_first_in_row_0_never_in_row_1(module, inputs, logits):
        logits = logits.clone()
        logits[0, :, EOS_ID] += 1e4
        logits[1, :, EOS_ID] -= 1e4
        return logits

    model.decoder.lm_head.register_forward_hook(eos_first_in_row_0_never_in_row_1)
    out = model.generate(QUERIES[:2], random_stm(model, 2), max_new_tokens=6)
    assert out.answers()[0] == [EOS_ID]
    assert out.lengths.tolist() == [1, 6]
    assert (out.tokens[0, 1:] == PAD_ID).all() and (out.log_probs[0, 1:] == 0).all()


def test_scored_log_probs_equal_sampling_log_probs():
    """PPO's ratio needs the old and new log-probs from the same processed distribution."""
    model = tiny_model()
    stm = random_stm(model, 3)
    sampling = SamplingConfig(temperature=0.7, top_k=20, top_p=0.9)
    out = model.generate(QUERIES, stm, max_new_tokens=12, sampling=sampling,
                         generator=torch.Generator().manual_seed(3))
    scored = model.score(QUERIES, out.tokens, stm, answer_mask=out.mask, sampling=sampling)
    torch.testing.assert_close(scored.log_probs, out.log_probs, atol=1e-5, rtol=0)
    plain = model.score(QUERIES, out.tokens, stm, answer_mask=out.mask, sampling=GREEDY)
    assert (plain.log_probs - out.log_probs).abs().max() > 1e-2  # plain softmax is a different policy


def test_score_projects_only_answer_positions_and_matches_the_full_vocabulary_path():
    """``score`` equals the plain path (full-vocab logits over the whole sequence, processed log-probs,
    entropy of the processed distribution), with and without ``with_logits``, gradients included."""
    from rxmrl.model import answer_prompt, pad_batch, processed_log_probs, safe_entropy

    model = tiny_model()
    stm = random_stm(model, 3)
    sampling = SamplingConfig(temperature=0.8, top_k=10, top_p=0.95)
    for seed in range(200):  # a draw in which some rows stop early, so padding must be skipped
        out = model.generate(QUERIES, stm, max_new_tokens=7, sampling=sampling,
                             generator=torch.Generator().manual_seed(seed))
        if not out.mask.all():
            break
    assert not out.mask.all()
    prompt, prompt_mask = pad_batch([answer_prompt(q) for q in QUERIES], side="left")
    ids = torch.cat((prompt, out.tokens[:, :-1]), 1)
    logits, _ = model.decoder(ids, stm, attention_mask=torch.cat((prompt_mask, out.mask[:, :-1]), 1))
    logits = logits[:, prompt.shape[1] - 1:]
    full = processed_log_probs(logits, sampling)
    expected_lp = full.gather(-1, out.tokens[..., None]).squeeze(-1).masked_fill(~out.mask, 0.0)
    expected_h = safe_entropy(full).masked_fill(~out.mask, 0.0)
    for with_logits in (True, False):
        scored = model.score(QUERIES, out.tokens, stm, answer_mask=out.mask, sampling=sampling,
                             with_logits=with_logits)
        finite = torch.isfinite(expected_lp)
        assert torch.equal(finite, torch.isfinite(scored.log_probs))
        torch.testing.assert_close(scored.log_probs[finite], expected_lp[finite], atol=1e-5, rtol=0)
        torch.testing.assert_close(scored.entropy, expected_h, atol=1e-5, rtol=0)
        assert (scored.logits is None) != with_logits
        if with_logits:
            torch.testing.assert_close(scored.logits, logits, atol=1e-5, rtol=0)
    stm_a = stm.clone().requires_grad_(True)
    stm_b = stm.clone().requires_grad_(True)
    new = model.score(QUERIES, out.tokens, stm_a, answer_mask=out.mask, sampling=sampling, with_logits=False)
    (new.log_probs.clamp_min(-50).sum() + new.entropy.sum()).backward()
    old_logits, _ = model.decoder(ids, stm_b, attention_mask=torch.cat((prompt_mask, out.mask[:, :-1]), 1))
    old = processed_log_probs(old_logits[:, prompt.shape[1] - 1:], sampling)
    old_lp = old.gather(-1, out.tokens[..., None]).squeeze(-1).masked_fill(~out.mask, 0.0)
    (old_lp.clamp_min(-50).sum() + safe_entropy(old).masked_fill(~out.mask, 0.0).sum()).backward()
    torch.testing.assert_close(stm_a.grad, stm_b.grad, atol=1e-5, rtol=1e-4)


def test_top_k_and_top_p_keep_only_the_most_likely_tokens():
    from rxmrl.model import processed_log_probs

    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    top_k = processed_log_probs(logits, SamplingConfig(top_k=2)).exp()
    assert (top_k[0, 2:] == 0).all() and top_k[0, :2].sum().item() == pytest.approx(1.0)
    top_p = processed_log_probs(logits, SamplingConfig(top_p=0.8)).exp()  # p = .64, .24, ...
    assert (top_p[0, :2] > 0).all() and (top_p[0, 2:] == 0).all()


@pytest.mark.parametrize("variant", ["simple", "self", "interlayer", "self-interlayer"])
@pytest.mark.parametrize("gate", ["elementwise", "linear"])
def test_residual_gates_stay_in_unit_interval(variant, gate):
    model = tiny_model(memory_attention=variant, residual_gate=gate)
    std = 0.5 if gate == "elementwise" else 0.5 / 32**0.5  # a Linear gate sums over 32 channels
    for parameter in model.memory_attention.parameters():
        torch.nn.init.normal_(parameter, std=std)  # spread the gates far from their 0.5 init
    stm = random_stm(model, 2)
    encoded = torch.randn(2, 2, 7, 32)
    _, gates = model.memory_attention(stm, encoded, return_gates=True)
    for g in gates:
        assert ((g > 0) & (g < 1)).all()
        assert g.max() - g.min() > 0.5  # the gate really varies, it is not stuck at one value


@pytest.mark.parametrize("variant", ["simple", "self", "interlayer", "self-interlayer"])
def test_memory_attention_output_shape_and_gradients(variant):
    model = tiny_model(memory_attention=variant)
    model.train()
    stm = random_stm(model, 2).requires_grad_()
    encoded = torch.randn(2, 2, 9, 32, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    new_stm = model.memory_attention(stm, encoded, mask)
    assert new_stm.shape == stm.shape
    new_stm.square().mean().backward()
    assert stm.grad.abs().sum() > 0 and encoded.grad.abs().sum() > 0
    assert encoded.grad[1, :, 5:].abs().max() == 0  # padded tokens are never read
    assert all(p.grad is not None for p in model.memory_attention.parameters())


@pytest.mark.parametrize("slot_identity", [False, True])
def test_slot_identity_lets_identical_slots_read_different_content(slot_identity):
    """Without a per-slot query offset, slots that hold the same vector stay identical after every write."""
    model = tiny_model(slot_identity=slot_identity, gate_init_bias=40.0)
    stm = torch.randn(2, 2, 1, 32).expand(2, 2, 8, 32)  # every slot holds the same vector
    new_stm = model.memory_attention(stm, torch.randn(2, 2, 9, 32))
    spread = (new_stm - new_stm.mean(2, keepdim=True)).abs().max() / new_stm.abs().mean()  # relative
    assert (spread > 1e-2) if slot_identity else (spread < 1e-5)
    if slot_identity:
        assert model.memory_attention.slot_identity.shape == (8, 32)
        assert any(p is model.memory_attention.slot_identity for p in model.parameter_groups()["memory_attention"])


def test_decoder_reads_encoder_states_as_memory_with_padding_mask():
    """Stage 1 feeds per-layer encoder states [B, L, T, D] (any length) as memory."""
    model = tiny_model()
    ids = torch.randint(7, 64, (2, 6))
    memory = torch.randn(2, 2, 11, 32)
    memory_mask = torch.ones(2, 11, dtype=torch.bool)
    memory_mask[:, 7:] = False
    logits, aux = model.decoder(ids, memory, memory_mask=memory_mask)
    other = memory.clone()
    other[:, :, 7:] = torch.randn(2, 2, 4, 32)
    logits_other, _ = model.decoder(ids, other, memory_mask=memory_mask)
    assert logits.shape == (2, 6, 64) and aux.ndim == 0
    torch.testing.assert_close(logits, logits_other)


def test_encoder_returns_per_layer_states_and_mlm_logits():
    model = tiny_model()
    ids, mask = model.encode_interactions(QUERIES[:2], [[40, 41], [ANSWER_ID, 42, EOS_ID]])
    encoded, mlm_logits = model.encoder(ids, mask, return_mlm_logits=True)
    assert encoded.shape == (2, 2, ids.shape[1], 32)
    assert mlm_logits.shape == (2, ids.shape[1], 64)


def test_interaction_ids_never_double_the_answer_token():
    query = [BOS_ID, QUERY_ID, 10, 11]
    expected = [BOS_ID, QUERY_ID, 10, 11, ANSWER_ID, 40, 41, EOS_ID]
    assert interaction_ids(query, [40, 41]) == expected
    assert interaction_ids(query + [ANSWER_ID], [ANSWER_ID, 40, 41, EOS_ID, PAD_ID]) == expected


def test_interact_streams_answer_then_memory_markers_and_updates_stm():
    model = tiny_model()
    model.reset_stm(1, generator=torch.Generator().manual_seed(0))
    before = model.export_stm()
    stream = list(model.interact(QUERIES[0], max_new_tokens=5))
    assert stream[-2:] == [MEMORY_UPDATE_STARTED, MEMORY_UPDATED]
    answer = stream[:-2]
    assert answer == model.generate([QUERIES[0]], before, max_new_tokens=5).answers()[0]
    expected = model.update_memory(before, [QUERIES[0]], [answer])
    torch.testing.assert_close(model.export_stm(), expected)


def test_written_interaction_closes_the_answer_or_keeps_it_as_generated():
    query, cut = [BOS_ID, QUERY_ID, 10], [ANSWER_ID, 40, PAD_ID, 41]  # a generated [A] first, a [PAD], no [EOS]
    assert written_interaction(query, cut, "closed") == [BOS_ID, QUERY_ID, 10, ANSWER_ID, 40, 41, EOS_ID]
    assert written_interaction(query, cut, "as-generated") == [BOS_ID, QUERY_ID, 10, ANSWER_ID, *cut]
    ended = [40, EOS_ID]
    assert written_interaction(query, ended, "closed") == written_interaction(query, ended, "as-generated")
    with pytest.raises(ValueError, match="write='open'"):
        written_interaction(query, ended, "open")


@pytest.mark.parametrize("write", ["closed", "as-generated"])
def test_interact_writes_an_answer_cut_by_the_limit_as_the_config_says(write):
    model = tiny_model(interaction_write=write)
    model.decoder.lm_head.bias = torch.nn.Parameter(torch.zeros(64).index_fill(0, torch.tensor([EOS_ID]), -1e4))
    model.reset_stm(1, generator=torch.Generator().manual_seed(0))
    before = model.export_stm()
    answer = list(model.interact(QUERIES[0], max_new_tokens=4))[:-2]
    assert len(answer) == 4 and EOS_ID not in answer  # the limit cut it
    ids = torch.tensor([[*QUERIES[0], ANSWER_ID, *answer, *([EOS_ID] if write == "closed" else [])]])
    torch.testing.assert_close(model.export_stm(), model.write_memory(before, ids), atol=0, rtol=0)


def test_the_eval_agent_writes_its_own_answers_as_the_model_writes_them():
    from rxmrl.envs.agents import RxTAgent
    from rxmrl.envs.padded import PaddedIds

    stm = random_stm(tiny_model(), 1)
    queries, cut = PaddedIds.from_lists([QUERIES[0]]), PaddedIds.from_lists([[ANSWER_ID, 40, 41]])
    for write in ("closed", "as-generated"):
        model = tiny_model(interaction_write=write)
        written = RxTAgent(model)._write(stm, queries, cut)
        expected = model.write_memory(stm, torch.tensor([written_interaction(QUERIES[0], [40, 41], write)]))
        torch.testing.assert_close(written, expected, atol=0, rtol=0)


def test_a_dense_decoder_is_one_swiglu_per_layer_with_no_aux_loss():
    model = tiny_model(decoder_ff="dense", num_experts=1, experts_per_token=1, expert_bias=True)
    layer = model.decoder.layers[0]
    assert layer.moe is None and layer.ff.up.bias is not None
    logits, aux = model.decoder(torch.tensor([QUERIES[0]]), random_stm(model, 1))
    assert logits.shape == (1, 5, 64) and aux.item() == 0.0
    counts = count_parameters(model)
    assert counts["decoder_active"] == counts["decoder"] < count_parameters(tiny_model())["decoder"]
    with pytest.raises(ValueError, match="decoder_ff='dense'"):
        TINY.replace(decoder_ff="dense")  # four experts


def test_init_stm_state_writes_a_system_prompt_into_fresh_memory():
    model = tiny_model(stm_init="zeros")
    model.init_stm_state(QUERIES[0], [40, 41, EOS_ID])
    assert model.export_stm().shape == (1, 2, 8, 32) and model.export_stm().abs().sum() > 0


def test_stm_init_types():
    assert tiny_model(stm_init="zeros").initial_stm(2).abs().sum() == 0
    normal = tiny_model(stm_init="normal", stm_init_std=0.02).initial_stm(4)
    assert 0.015 < normal.std().item() < 0.025
    learned = tiny_model(stm_init="learned")
    assert learned.initial_stm(3).requires_grad and learned.parameter_groups()["stm"]


def test_parameter_groups_are_disjoint_and_cover_the_model():
    model = tiny_model()
    groups = model.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    cross = {id(p) for p in groups["memory_cross_attention"]}
    assert id(model.decoder.layers[0].memory_cross_attn.q_proj.weight) in cross
    assert id(model.decoder.lm_head.weight) in {id(p) for p in groups["decoder"]}


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    model = tiny_model()
    stm = random_stm(model, 1)
    ids = torch.randint(7, 64, (1, 9))
    model.save_pretrained(tmp_path)
    loaded = ReactiveTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    assert loaded.encoder.embedding is loaded.decoder.embedding  # still shared after loading
    torch.testing.assert_close(loaded.decoder(ids, stm)[0], model.decoder(ids, stm)[0], atol=0, rtol=0)
    encoded_ids, mask = model.encode_interactions([QUERIES[0]], [[40, 41]])
    torch.testing.assert_close(loaded.write_memory(stm, encoded_ids, mask),
                               model.write_memory(stm, encoded_ids, mask), atol=0, rtol=0)


def test_missing_checkpoint_offline_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        ReactiveTransformer.from_pretrained(tmp_path / "no-such-model")


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_preset_parameter_counts_within_five_percent_of_published(preset):
    counts = count_preset(get_preset(preset))
    for component, published in PUBLISHED[preset].items():
        assert abs(counts[component] - published) / published <= 0.05, (component, counts[component])


def test_decoder_only_model_interacts_without_memory_update():
    model = tiny_model(decoder_only=True)
    model.reset_stm(1)
    stm = model.export_stm()
    stream = list(model.interact(QUERIES[1], max_new_tokens=3))
    assert stream[-2:] == [MEMORY_UPDATE_STARTED, MEMORY_UPDATED]
    torch.testing.assert_close(model.export_stm(), stm)


def test_model_info_command_prints_config_and_published_comparison(capsys):
    from rxmrl.cli import main

    assert main(["model", "info", "--preset", "rxt-alpha-supervised"]) == 0
    printed = capsys.readouterr().out
    assert '"num_experts": 36' in printed
    decoder_row = next(line for line in printed.splitlines() if line.startswith("decoder "))
    assert "141.00M" in decoder_row
    assert main(["model", "info", "--preset", "no-such"]) == 2


def test_tanh_gate_stays_in_minus_one_one():
    model = tiny_model(gate_activation="tanh")
    for parameter in model.memory_attention.parameters():
        torch.nn.init.normal_(parameter, std=0.2)  # spread, short of float32 saturation
    _, gates = model.memory_attention(random_stm(model, 2), torch.randn(2, 2, 5, 32), return_gates=True)
    for g in gates:
        assert ((g > -1) & (g < 1)).all() and (g < 0).any() and (g > 0).any()


def test_closed_gate_keeps_memory_and_open_gate_replaces_it():
    closed = tiny_model(gate_init_bias=-40.0)
    stm, encoded = random_stm(closed, 2), torch.randn(2, 2, 5, 32)
    torch.testing.assert_close(closed.memory_attention(stm, encoded), stm)
    opened = tiny_model(gate_init_bias=40.0)
    new_stm = opened.memory_attention(stm, encoded)
    assert (new_stm - stm).abs().mean() > 0.5  # random STM has std 1; the update is attention output


def test_load_stm_rejects_a_wrong_shape():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected \[B, 2, 8, 32\]"):
        model.load_stm(torch.zeros(1, 3, 8, 32))


def test_answer_loss_reaches_every_component_through_the_memory_update():
    """Supervised memory-aware training and MRL backpropagate through update_memory and score."""
    model = tiny_model().train()
    stm = model.update_memory(model.initial_stm(2), QUERIES[:2], [[40, 41], [42]])
    scored = model.score(QUERIES[:2], [[43, EOS_ID], [44, 45, EOS_ID]], stm)
    assert scored.mask.tolist() == [[True, True, False], [True, True, True]]
    (-scored.log_probs.sum() + scored.aux_loss).backward()
    for name, params in model.parameter_groups().items():
        if name != "stm":
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = tiny_model()
    stm = random_stm(model, 3)
    sampling = SamplingConfig(temperature=1.2)
    first = model.generate(QUERIES, stm, 10, sampling, generator=torch.Generator().manual_seed(7))
    again = model.generate(QUERIES, stm, 10, sampling, generator=torch.Generator().manual_seed(7))
    other = model.generate(QUERIES, stm, 10, sampling, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.tokens, again.tokens) and not torch.equal(first.tokens, other.tokens)


def test_entropy_of_the_sampling_distribution_ignores_filtered_tokens():
    from rxmrl.model import entropy

    logits = torch.tensor([[0.0, 0.0, -1e9, -1e9], [5.0, 0.0, 0.0, 0.0]])
    top2 = entropy(logits, SamplingConfig(top_k=2))
    assert top2[0].item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    assert torch.isfinite(top2).all() and top2[1] < top2[0]


def test_inverse_transform_draws_follow_the_distribution_and_never_a_filtered_token():
    from rxmrl.model.sampling import draw

    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2], [0.1, 0.0, 0.0, 0.0, 0.9]])
    generator = torch.Generator().manual_seed(0)
    rows = probs.repeat_interleave(20000, 0)  # 20000 draws from each row
    tokens = draw(rows * 3.0, generator).view(2, -1)  # unnormalised weights give the same distribution
    counts = torch.stack([torch.bincount(t, minlength=5) for t in tokens]).float() / 20000
    assert torch.equal(counts[probs == 0], torch.zeros(int((probs == 0).sum())))  # filtered: never drawn
    assert (counts - probs).abs().max() < 0.015  # 4+ standard errors of a 20000-draw frequency


def test_inverse_transform_refuses_non_finite_probabilities():
    from rxmrl.model.sampling import NonFiniteProbabilitiesError, draw

    for bad in (float("nan"), float("inf")):
        with pytest.raises(NonFiniteProbabilitiesError, match="NaN/inf"):
            draw(torch.tensor([[0.5, 0.5], [bad, 0.1]]))


def test_saving_the_same_weights_twice_writes_the_same_bytes_and_loads_back(tmp_path):
    """Issue 35, defect 13: the tied embedding's dropped names were a hash map in the header, so their order
    (and the file's checksum) changed from one save to the next."""
    model = tiny_model()
    saved = []
    for attempt in range(6):  # a random order of two names survives 6 saves with chance 1/32
        model.save_pretrained(tmp_path / f"save-{attempt}")
        saved.append((tmp_path / f"save-{attempt}" / "model.safetensors").read_bytes())
    assert all(data == saved[0] for data in saved)
    loaded = ReactiveTransformer.from_pretrained(tmp_path / "save-0").eval()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_every_file_of_a_saved_model_gets_the_same_plain_mode(tmp_path):
    """Issue 35, defect 12: model.safetensors came out 0600 beside 0644 siblings."""
    tiny_model().save_pretrained(tmp_path / "model")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "model").iterdir()}
    umask = os.umask(0o022)
    os.umask(umask)
    assert modes and set(modes.values()) == {0o666 & ~umask}, modes
