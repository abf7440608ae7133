"""Converters from the reference formats: parity with records made by the reference package itself.

The records under tests/data/parity/ were made by experiments/parity/make_rxlm_fixtures.py with rxlm 0.3.80
(tiny random models, constant parameters perturbed, experts scaled up): decoder logits from a given STM, the
encoder states and the STM after one memory update, and the greedy ``interact`` stream of three turns with the
STM after each. ``alpha`` and ``variant`` cover the MoE options; ``dense`` a dense decoder with a static gate;
``limit-tied`` turns that stop at the token limit, saved tied (``share_components`` before ``save_pretrained``);
``special`` a generated [PAD] inside an answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rxmrl.cli import main
from rxmrl.convert import CONVERSION_FILE, CONVERTED_FILES, ConversionError, convert_rxlm, load_rxlm
from rxmrl.convert.rxlm_config import rxlm_to_config
from rxmrl.convert.vocab import BLOCKED_LOGIT, mapping_for, role_ids
from rxmrl.model import MEMORY_UPDATE_STARTED, MEMORY_UPDATED, ReactiveTransformer, count_parameters
from rxmrl.model.params import PUBLISHED
from rxmrl.special_tokens import ANSWER_ID, BOS_ID, EOS_ID, PAD_ID, QUERY_ID, SPECIAL_TOKENS
from rxmrl.tokenizer import RxTokenizer

DATA = Path(__file__).parent / "data" / "parity"
FIXTURES = ("rxlm-alpha", "rxlm-variant", "rxlm-dense", "rxlm-limit-tied", "rxlm-special")
LOGIT_TOLERANCE, STM_TOLERANCE = 1e-4, 1e-5


def records(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    return (json.loads((DATA / name / "records.json").read_text()),
            load_file(str(DATA / name / "records.safetensors")))


@pytest.fixture(scope="module", params=FIXTURES)
def case(request):
    converted = load_rxlm(DATA / request.param / "reference")
    return (request.param, converted, *records(request.param))


def batch_first(stm: torch.Tensor) -> torch.Tensor:
    """The reference's STM ``[L, B, S, D]`` in our layout ``[B, L, S, D]``."""
    return stm.transpose(0, 1)


@torch.no_grad()
def logit_gap(model, mapping, rec, tensors) -> float:
    ids = torch.tensor([mapping.ids(rec["logit_ids"])])
    logits, _ = model.decoder(ids, batch_first(tensors["stm"]))
    ours = logits[..., torch.tensor(mapping.relabel)]  # back in the reference's token order
    return (ours - tensors["logits"]).abs().max().item()


@torch.no_grad()
def stm_gap(model, mapping, rec, tensors) -> float:
    new = model.write_memory(batch_first(tensors["stm"]), torch.tensor([mapping.ids(rec["update_ids"])]))
    return (new - batch_first(tensors["stm_after_update"])).abs().max().item()


def test_encoder_states_match_the_reference(case):
    _, converted, rec, tensors = case
    with torch.no_grad():
        encoded, _ = converted.model.encoder(torch.tensor([converted.mapping.ids(rec["update_ids"])]))
    assert (encoded - batch_first(tensors["encoded"])).abs().max().item() < STM_TOLERANCE


def test_decoder_logits_match_the_reference(case):
    _, converted, rec, tensors = case
    assert logit_gap(converted.model, converted.mapping, rec, tensors) < LOGIT_TOLERANCE


def test_memory_update_matches_the_reference(case):
    _, converted, rec, tensors = case
    assert stm_gap(converted.model, converted.mapping, rec, tensors) < STM_TOLERANCE


def test_greedy_interact_stream_and_memory_match_the_reference_over_three_turns(case):
    _, converted, rec, tensors = case
    model, tokenizer, mapping = converted.model, converted.tokenizer, converted.mapping
    model.load_stm(batch_first(tensors["stm"]))
    for turn, (query, expected) in enumerate(zip(rec["queries"], rec["streams"], strict=True)):
        stream = list(model.interact(tokenizer.encode_query(query), max_new_tokens=rec["max_new_tokens"]))
        assert stream == mapping.ids(expected)
        assert stream[-2:] == [MEMORY_UPDATE_STARTED, MEMORY_UPDATED]
        gap = (model.export_stm() - batch_first(tensors[f"stm_after_turn_{turn}"])).abs().max().item()
        assert gap < STM_TOLERANCE


def test_each_fixture_shows_what_it_is_for():
    """The streams a fixture was made for: answers cut by the limit, a generated [PAD] inside an answer."""
    answers = {name: [s[:-2] for s in records(name)[0]["streams"]] for name in FIXTURES}
    limit = records("rxlm-limit-tied")[0]["max_new_tokens"]
    assert all(len(a) == limit and 3 not in a for a in answers["rxlm-limit-tied"])  # reference [EOS] id 3
    assert any(0 in a[:-1] for a in answers["rxlm-special"])  # reference [PAD] id 0, more tokens after it
    assert all(a[-1] == 3 for name in ("rxlm-alpha", "rxlm-variant", "rxlm-dense") for a in answers[name])
    assert "use_moe" not in json.loads((DATA / "rxlm-dense" / "reference" / "config.json").read_text())[
        "decoder_config"]  # rxlm's default: dense


@pytest.mark.parametrize("name", ["rxlm-limit-tied", "rxlm-special"])
def test_a_closed_write_misses_the_reference_where_the_answer_is_not_closed(name):
    """Closing a cut answer with [EOS] or dropping a generated [PAD] (our own models' form) writes another STM."""
    converted = load_rxlm(DATA / name / "reference")
    rec, tensors = records(name)
    model, tokenizer = converted.model, converted.tokenizer
    assert model.config.interaction_write == "as-generated"
    model.config = model.config.replace(interaction_write="closed")
    model.load_stm(batch_first(tensors["stm"]))
    gaps = []
    for turn, query in enumerate(rec["queries"]):
        list(model.interact(tokenizer.encode_query(query), max_new_tokens=rec["max_new_tokens"]))
        gaps.append((model.export_stm() - batch_first(tensors[f"stm_after_turn_{turn}"])).abs().max().item())
    assert max(gaps) > 100 * STM_TOLERANCE, gaps


def test_a_dense_reference_decoder_converts_to_one_swiglu_per_layer():
    converted = load_rxlm(DATA / "rxlm-dense" / "reference")
    config, layer = converted.model.config, converted.model.decoder.layers[0]
    assert (config.decoder_ff, config.num_experts, config.shared_experts) == ("dense", 1, 0)
    assert layer.moe is None and layer.ff.gate.bias is not None  # rxlm's dense FFN has biases
    assert count_parameters(converted.model)["decoder_active"] == count_parameters(converted.model)["decoder"]


def test_a_tied_save_is_retied_and_conversion_json_names_what_was_reconstructed(tmp_path, capsys):
    source = DATA / "rxlm-limit-tied" / "reference"
    saved = load_file(str(source / "model.safetensors"))
    assert "encoder.model.embedding.weight" not in saved and "memory_attention.model.stm.memory" not in saved
    converted = load_rxlm(source)
    mapping = converted.mapping
    twin = mapping.rows(saved["decoder.model.embedding.weight"])
    assert torch.equal(converted.model.encoder.embedding.weight, twin)
    folder = convert_rxlm(source, tmp_path / "converted")
    assert json.loads((folder / CONVERSION_FILE).read_text())["reconstructed"] == {
        "encoder.model.embedding.weight": "decoder.model.embedding.weight",
        "memory_attention.model.stm.memory": "decoder.model.stm.memory"}
    assert load_rxlm(DATA / "rxlm-alpha" / "reference").provenance["reconstructed"] == {}  # a complete save
    assert main(["convert", "rxlm", str(source), str(tmp_path / "cli")]) == 0
    assert "re-tied from a tied save: encoder.model.embedding.weight from decoder" in capsys.readouterr().out


def test_a_save_without_the_embedding_or_its_twin_is_refused_naming_it(tmp_path):
    from safetensors.torch import save_file

    source = tmp_path / "reference"
    shutil.copytree(DATA / "rxlm-limit-tied" / "reference", source)
    tensors = load_file(str(source / "model.safetensors"))
    del tensors["decoder.model.embedding.weight"]
    save_file(tensors, str(source / "model.safetensors"))
    with pytest.raises(ConversionError, match="encoder.model.embedding.weight"):
        load_rxlm(source)


def test_converted_tokenizer_encodes_as_the_reference_in_our_ids(case):
    _, converted, rec, _ = case
    tokenizer, mapping = converted.tokenizer, converted.mapping
    assert [tokenizer.encode_query(q) for q in rec["queries"]] == [mapping.ids(ids) for ids in rec["query_ids"]]
    query, answer = rec["saved_interaction"]
    full = [*tokenizer.encode_query(query), ANSWER_ID, *tokenizer.encode(answer), EOS_ID]
    assert full == mapping.ids(rec["update_ids"])
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.tokenizer.token_to_id(token) == token_id
    roles = rec["special_token_ids"]
    assert mapping.ids([roles["pad"], roles["bos"], roles["eos"], roles["query"], roles["answer"]]) == [
        PAD_ID, BOS_ID, EOS_ID, QUERY_ID, ANSWER_ID]


def test_a_role_the_reference_tokenizer_lacks_is_added_and_never_generated():
    converted = load_rxlm(DATA / "rxlm-variant" / "reference")  # its tokenizer has no [T]
    assert converted.mapping.added == ["[T]"]
    think = converted.tokenizer.tokenizer.token_to_id("[T]")
    assert converted.model.embedding.weight[think].abs().sum() == 0
    assert converted.model.decoder.lm_head.bias[think] == BLOCKED_LOGIT


def test_card_usage_system_prompt_then_streamed_interact_with_string_tokens():
    """The card's steps in our API: memory from a system-prompt interaction, a streamed answer, text out."""
    converted = load_rxlm(DATA / "rxlm-alpha" / "reference")
    model, tokenizer = converted.model, converted.tokenizer
    model.init_stm_state(tokenizer.encode_query("You are a helpful assistant."),
                         tokenizer.encode("I will answer about Lily and Tom."), torch.Generator().manual_seed(0))
    written = model.export_stm()
    pieces, answer, markers = [], [], []
    for token in model.interact(tokenizer.encode_query("What did Lily find?"), max_new_tokens=12):
        if token in (MEMORY_UPDATE_STARTED, MEMORY_UPDATED):
            markers.append(token)
            continue
        answer.append(token)
        pieces.append(tokenizer.decode([token]))
    assert markers == [MEMORY_UPDATE_STARTED, MEMORY_UPDATED]
    assert answer and "".join(pieces) == tokenizer.decode(answer)  # string tokens add up to the answer
    assert not torch.equal(model.export_stm(), written)  # the turn was written into memory


# ---------------------------------------------------------------------------------------- discriminative
def _break(model: ReactiveTransformer, how: str) -> None:
    state = model.state_dict()
    with torch.no_grad():
        if how == "dropped tensor":  # what a checkpoint without it loads: the init value
            state["decoder.layers.0.memory_kv_norm.weight"].fill_(1.0)
            state["memory_attention.mean_norm.weight"].fill_(1.0)
        elif how == "transposed projection":
            for key in ("decoder.layers.0.memory_cross_attn.q_proj.weight", "memory_attention.layers.0.attn.q_proj.weight"):
                state[key].copy_(state[key].T.clone())  # [H_q * d_h, D] is square in this fixture
        elif how == "swapped gates":
            layer = "memory_attention.layers.0"
            keys = sorted(k for k in state if k.startswith(f"{layer}.pre_gate.") or k.startswith(f"{layer}.gate."))
            half = len(keys) // 2
            for a, b in zip(keys[:half], keys[half:], strict=True):
                first = state[a].clone()
                state[a].copy_(state[b])
                state[b].copy_(first)
            dense = model.config.decoder_ff == "dense"
            ff = "decoder.layers.0.ff" if dense else "decoder.layers.0.moe"
            up, gate = (f"{ff}.up.weight", f"{ff}.gate.weight") if dense else (f"{ff}.w_up", f"{ff}.w_gate")
            first = state[up].clone()
            state[up].copy_(state[gate])
            state[gate].copy_(first)
        elif how == "no RoPE relabelling":
            from rxmrl.convert.rxlm_weights import rope_rows

            inverse = rope_rows(model.config.head_dim).argsort()
            key = "decoder.layers.0.self_attn.q_proj.weight"
            weight = state[key]
            weight.copy_(weight.view(-1, model.config.head_dim, weight.shape[1])[:, inverse].reshape(weight.shape))


@pytest.mark.parametrize(("name", "how"), [
    *(("rxlm-alpha", how) for how in ("dropped tensor", "transposed projection", "swapped gates",
                                      "no RoPE relabelling")),
    ("rxlm-dense", "swapped gates"), ("rxlm-dense", "dropped tensor"),
])
def test_a_broken_conversion_misses_the_records_by_far(name, how):
    converted = load_rxlm(DATA / name / "reference")
    rec, tensors = records(name)
    if how == "transposed projection":
        key = "decoder.layers.0.memory_cross_attn.q_proj.weight"
        assert converted.model.state_dict()[key].shape[0] == converted.model.state_dict()[key].shape[1]
    _break(converted.model, how)
    logits = logit_gap(converted.model, converted.mapping, rec, tensors)
    stm = stm_gap(converted.model, converted.mapping, rec, tensors)
    assert logits > 100 * LOGIT_TOLERANCE or stm > 100 * STM_TOLERANCE, (how, logits, stm)


# --------------------------------------------------------------------------------------------- refusals
def reference_config() -> dict:
    return json.loads((DATA / "rxlm-alpha" / "reference" / "config.json").read_text())


def test_conversion_refuses_an_unknown_config_field_with_its_name(tmp_path):
    source = tmp_path / "reference"
    shutil.copytree(DATA / "rxlm-alpha" / "reference", source)
    config = reference_config()
    config["decoder_config"]["use_quantum_routing"] = True
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="use_quantum_routing"):
        load_rxlm(source)
    assert main(["convert", "rxlm", str(source), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("section", "field", "value"), [
    ("memory_attention_config", "norm_type", "adaptive"),
    ("decoder_config", "use_gated_attention", True),
    ("decoder_config", "moe_bias_mode", "local"),
    ("decoder_config", "num_shared_experts", 2),
    ("memory_attention_config", "residual_per_slot_gate", False),
])
def test_conversion_refuses_an_unsupported_value_naming_the_field(section, field, value):
    config = reference_config()
    config[section][field] = value
    with pytest.raises(ConversionError, match=f"{section}.{field}"):
        rxlm_to_config(config, vocab_size=155)


def test_rxlm_defaults_convert_to_a_dense_decoder_without_a_gate():
    """Only what rxlm needs to build an RxTAlpha (SQA's query groups); every other field at its default."""
    groups = {"att_query_groups": 8}
    config = rxlm_to_config({"decoder_config": dict(groups), "encoder_config": dict(groups),
                             "memory_attention_config": dict(groups, interlayer_att_query_groups=8)}, vocab_size=20000)
    assert (config.decoder_ff, config.shared_experts, config.residual_gate) == ("dense", 0, "none")
    assert config.interaction_write == "as-generated"
    with torch.device("meta"):
        assert ReactiveTransformer(config).decoder.layers[0].ff.down.bias is not None


def test_conversion_refuses_the_grouped_memory_attention_variant():
    config = reference_config()
    config["memory_attention_variant"] = "grouped-self-interlayer"
    with pytest.raises(ConversionError, match="memory_attention_variant"):
        rxlm_to_config(config, vocab_size=155)


def test_a_tokenizer_without_an_answer_token_gets_a_clear_error():
    tokenizer_json = json.loads((DATA / "rxlm-alpha" / "reference" / "tokenizer.json").read_text())
    tokenizer_json["added_tokens"] = [t for t in tokenizer_json["added_tokens"] if t["content"] != "[A]"]
    del tokenizer_json["model"]["vocab"]["[A]"]
    with pytest.raises(ValueError, match=r"answer \(\[A\]\)"):
        role_ids(tokenizer_json)


def test_relabelling_puts_roles_at_our_ids_and_keeps_every_token():
    tokenizer_json = json.loads((DATA / "rxlm-alpha" / "reference" / "tokenizer.json").read_text())
    roles = role_ids(tokenizer_json)
    mapping = mapping_for(tokenizer_json, roles)
    assert sorted(mapping.relabel) == list(range(mapping.old_size))  # a permutation: nothing lost
    assert [mapping.relabel[roles[r]] for r in ("pad", "bos", "eos", "query", "answer", "think", "mask")] == list(
        range(len(SPECIAL_TOKENS)))


# ----------------------------------------------------------------------------------------- round trip
def test_round_trip_convert_save_from_pretrained_gives_identical_logits(tmp_path):
    converted = load_rxlm(DATA / "rxlm-alpha" / "reference")
    folder = convert_rxlm(DATA / "rxlm-alpha" / "reference", tmp_path / "converted")
    model = ReactiveTransformer.from_pretrained(folder).eval()
    tokenizer = RxTokenizer.load(folder)
    ids = torch.tensor([tokenizer.encode_prompt("What did Lily find?")])
    stm = converted.model.initial_stm(1, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.decoder(ids, stm)[0], converted.model.decoder(ids, stm)[0])
        assert torch.equal(model.write_memory(stm, ids), converted.model.write_memory(stm, ids))
    provenance = json.loads((folder / CONVERSION_FILE).read_text())
    assert provenance["relabel"] == converted.mapping.relabel
    card = (folder / "README.md").read_text()
    assert "converted_from" in card and "rxlm-alpha" in card and "memory_attention_stages | sequential" in card


def test_eval_and_mrl_warm_start_accept_the_converted_folder(tmp_path, capsys):
    from rxmrl.training.mrl.run import load_warm_start

    folder = tmp_path / "converted"
    assert main(["convert", "rxlm", str(DATA / "rxlm-alpha" / "reference"), str(folder)]) == 0
    policy, tokenizer = load_warm_start(folder)
    assert policy.config.memory_attention_stages == "sequential" and tokenizer.vocab_size == 155
    assert main(["eval", "--agent", str(folder), "--config", "steps-1", "--episodes", "2",
                 "--max-new-tokens", "4", "--similarity", "policy-embedding", "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["agent"] == "rxt" and summary["episodes"] == 2


def test_train_mrl_runs_from_the_converted_folder(tmp_path):
    from test_mrl_trainer import TINY

    folder = convert_rxlm(DATA / "rxlm-alpha" / "reference", tmp_path / "converted")
    args = ["train", "mrl", "--init", str(folder), "--run-dir", str(tmp_path / "run")]
    for override in [*TINY, "stages.0.num_episodes=3", "stages.0.eval_episodes=3", "stages.1.num_episodes=3",
                     "stages.1.eval_episodes=3", "mrl.ppo_epochs=1"]:
        args += ["--set", override]
    assert main(args) == 0
    trained = ReactiveTransformer.from_pretrained(tmp_path / "run" / "final")
    assert trained.config == ReactiveTransformer.from_pretrained(folder).config


# ---------------------------------------------------------------------------------------- full size
def test_converted_full_size_config_has_the_reference_and_card_parameter_counts():
    recorded = json.loads((DATA / "rxlm-full-size.json").read_text())
    config = rxlm_to_config(recorded["config"], vocab_size=recorded["config"]["decoder_config"]["vocab_size"])
    with torch.device("meta"):
        model = ReactiveTransformer(config)
    counts = count_parameters(model)
    for component in ("decoder", "encoder", "memory_attention"):
        assert counts[component] == recorded["counts"][component], component
    card = PUBLISHED["rxt-alpha-supervised"]
    for component in ("decoder", "decoder_active", "encoder"):
        assert abs(counts[component] - card[component]) / card[component] < 0.015, component


# ------------------------------------------------------------------------------------ RxNN decoder
RXNN = DATA / "rxnn-decoder"


@pytest.fixture(scope="module")
def rxnn():
    from rxmrl.convert.rxnn import load_rxnn_decoder

    return load_rxnn_decoder(RXNN / "reference"), *records("rxnn-decoder")


@torch.no_grad()
def rxnn_logit_gap(converted, rec, tensors) -> float:
    logits, _ = converted.model.decoder(torch.tensor([converted.mapping.ids(rec["logit_ids"])]),
                                        batch_first(tensors["stm"]))
    return (logits[..., torch.tensor(converted.mapping.relabel)] - tensors["logits"]).abs().max().item()


def test_rxnn_decoder_logits_and_greedy_answers_match_the_reference(rxnn):
    converted, rec, tensors = rxnn
    model, tokenizer, mapping = converted.model, converted.tokenizer, converted.mapping
    assert model.config.decoder_only and model.encoder is None
    assert rxnn_logit_gap(converted, rec, tensors) < LOGIT_TOLERANCE
    model.load_stm(batch_first(tensors["stm"]))
    for query, query_ids, answer in zip(rec["queries"], rec["query_ids"], rec["answers"], strict=True):
        assert tokenizer.encode_prompt(query) == mapping.ids(query_ids)
        stream = list(model.interact(tokenizer.encode_query(query), max_new_tokens=rec["max_new_tokens"]))
        assert stream == [*mapping.ids(answer), MEMORY_UPDATE_STARTED, MEMORY_UPDATED]  # no memory to write


def test_rxnn_cross_attention_keys_keep_their_channel_order(rxnn):
    """Relabelling the cross-attention keys as in RxLM (RxNN rotates only its queries there) misses by far."""
    from rxmrl.convert.rxlm_weights import rope_rows

    converted, rec, tensors = rxnn
    model = copy_model(converted.model)
    key = "decoder.layers.0.memory_cross_attn.k_proj.weight"
    weight = model.state_dict()[key]
    with torch.no_grad():
        weight.copy_(weight.view(-1, model.config.head_dim, weight.shape[1])[:, rope_rows(model.config.head_dim)]
                     .reshape(weight.shape))
    broken = type(converted)(model, converted.tokenizer, converted.mapping)
    assert rxnn_logit_gap(broken, rec, tensors) > 100 * LOGIT_TOLERANCE


def copy_model(model: ReactiveTransformer) -> ReactiveTransformer:
    copy = ReactiveTransformer(model.config)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def test_rxnn_conversion_refuses_an_unknown_field_and_the_command_converts(tmp_path):
    from rxmrl.convert.rxnn import rxnn_to_config

    config = json.loads((RXNN / "reference" / "config.json").read_text())
    with pytest.raises(ConversionError, match="use_lightning"):
        rxnn_to_config({**config, "use_lightning": True}, vocab_size=153)
    with pytest.raises(ConversionError, match="use_moe"):
        rxnn_to_config({**config, "use_moe": False}, vocab_size=153)
    assert main(["convert", "rxnn-decoder", str(RXNN / "reference"), str(tmp_path / "mini")]) == 0
    model = ReactiveTransformer.from_pretrained(tmp_path / "mini")
    assert model.config.decoder_only and model.config.expert_bias


# ------------------------------------------------------------------------------------- hub conventions
def test_save_pretrained_writes_a_model_card_with_counts_provenance_and_evaluation(tmp_path, nano):
    model = ReactiveTransformer(nano)
    model.save_pretrained(tmp_path / "model", provenance={"run": "runs/quickstart/mrl"},
                          evaluation=[{"agent": "mrl", "reward mean": 4.2}])
    card = (tmp_path / "model" / "README.md").read_text()
    total = count_parameters(model)["total"]
    assert "library_name: rxmrl" in card and f"| total | {total / 1e6:.2f}M |" in card
    assert "- run: runs/quickstart/mrl" in card and "| mrl | 4.2 |" in card
    model.save_pretrained(tmp_path / "model")  # saving again rewrites the card: nothing stale is kept
    assert "runs/quickstart/mrl" not in (tmp_path / "model" / "README.md").read_text()


def test_push_to_hub_uploads_the_saved_folder(tmp_path, nano, monkeypatch):
    import huggingface_hub.hub_mixin as hub_mixin

    uploaded = {}

    class FakeApi:  # the hub is not reachable here: record what would be sent
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploaded[repo_id] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
            return "commit-url"

    monkeypatch.setattr(hub_mixin, "HfApi", FakeApi)
    model = ReactiveTransformer(nano)
    assert model.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="someone/tiny-rxt") == "commit-url"
    files = uploaded["someone/tiny-rxt"]
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for name, content in files.items():
        (pushed / name).write_bytes(content)
    reloaded = ReactiveTransformer.from_pretrained(pushed).state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in model.state_dict().items())
    assert b'from_pretrained("someone/tiny-rxt")' in files["README.md"]


def test_separate_component_folders_convert_to_the_same_model(tmp_path):
    """Decoder, encoder and memory attention saved apart (their own ``save_pretrained`` folders)."""
    from safetensors.torch import save_file

    from rxmrl.convert import load_rxlm_components

    reference = DATA / "rxlm-alpha" / "reference"
    config, tensors = reference_config(), load_file(str(reference / "model.safetensors"))
    for part in ("decoder", "encoder", "memory_attention"):
        folder = tmp_path / part
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config[f"{part}_config"]))
        save_file({k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(f"{part}.")},
                  str(folder / "model.safetensors"))
    args = [str(tmp_path / part) for part in ("decoder", "encoder", "memory_attention")]
    components = load_rxlm_components(*args, tokenizer=reference / "tokenizer.json")
    whole = load_rxlm(reference)
    assert all(torch.equal(v, whole.model.state_dict()[k]) for k, v in components.model.state_dict().items())
    assert main(["convert", "rxlm", "--decoder", args[0], "--encoder", args[1], "--memory-attention", args[2],
                 "--tokenizer", str(reference / "tokenizer.json"), str(tmp_path / "out")]) == 0
    assert main(["convert", "rxlm", "--decoder", args[0], str(tmp_path / "out2")]) == 2


# ------------------------------------------------------------------- the destination (issue 35, defect 1)


REFERENCE = DATA / "rxlm-alpha" / "reference"


def test_convert_refuses_a_folder_holding_files_it_did_not_write_and_keeps_them(tmp_path, capsys):
    destination = tmp_path / "D"
    destination.mkdir()
    (destination / "important.txt").write_text("precious")
    assert main(["convert", "rxlm", str(REFERENCE), str(destination)]) == 2
    out = capsys.readouterr().err
    assert out == (f"error: {destination} holds files this command did not write (important.txt): give an empty "
                   "or new folder, or pass --replace to replace the folder and everything in it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]  # no hidden .old-/.tmp- sibling either
    assert [p.name for p in destination.iterdir()] == ["important.txt"]
    assert (destination / "important.txt").read_text() == "precious"


def test_convert_refuses_a_file_at_the_destination_even_with_replace(tmp_path, capsys):
    destination = tmp_path / "D"
    destination.write_text("a file")
    assert main(["convert", "rxlm", str(REFERENCE), str(destination), "--replace"]) == 2
    assert capsys.readouterr().err == f"error: {destination} is a file, not a folder: give a folder (absent or " \
                                      "empty) to write into\n"
    assert destination.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["D"]


def test_convert_replaces_an_earlier_conversion_and_with_replace_any_folder_leaving_no_hidden_sibling(tmp_path):
    destination = tmp_path / "D"
    assert main(["convert", "rxlm", str(REFERENCE), str(destination)]) == 0
    written = sorted(p.name for p in destination.iterdir())
    assert set(written) <= set(CONVERTED_FILES)  # the converter's own list of what it writes is complete
    assert main(["convert", "rxlm", str(REFERENCE), str(destination)]) == 0  # an earlier conversion: replaced
    (destination / "notes.txt").write_text("mine")
    assert main(["convert", "rxlm", str(REFERENCE), str(destination)]) == 2
    assert main(["convert", "rxlm", str(REFERENCE), str(destination), "--replace"]) == 0
    assert sorted(p.name for p in destination.iterdir()) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]
