"""Build tiny random RxT-Alpha models with the reference package (rxlm 0.3.80) and record their outputs.

Runs only where the reference virtualenv exists (it is never our dependency)::

    /work/rxlm-venv/bin/python experiments/parity/make_rxlm_fixtures.py tests/data/parity

For each configuration it writes ``<out>/rxlm-<name>/``:

- ``reference/``: the model as the reference API saves it (``RxTAlpha.save_pretrained``: ``config.json`` +
  ``model.safetensors``) and its ``tokenizer.json``;
- ``records.safetensors``: ``stm`` (the given STM ``[L, 1, S, D]``), ``logits`` (decoder logits ``[1, T, V]``
  of ``logit_ids`` read from ``stm``), ``encoded`` (the encoder's per-layer states ``[L, 1, T, D]`` of
  ``update_ids``), ``stm_after_update`` (``stm`` after one memory update with ``update_ids``),
  ``stm_after_turn_<i>`` (after each interact turn);
- ``records.json``: the ids, the texts, and the greedy ``interact`` stream of three turns from ``stm``
  (with the -1 / -2 markers), and the reference's own tokenization of the texts.

The reference quirks this script works around are listed in shared/RXLM-QUIRKS.md: no flash attention,
``stateless_layers_config=[]``, the STM K/V precompute disabled (it raises on CPU; the decoder then
projects the STM at every step, same logits), greedy as ``top_k=1`` and the full-recompute stream
(``use_self_attn_cache=False``) as the reference. Constant-initialised parameters are perturbed and the
routed experts scaled up so that a conversion that drops or mixes up a tensor misses the records by far.
The model is saved before ``share_components`` (the tied save drops tensors), with the decoder's own
embedding set equal to the shared encoder embedding, and the saved key set is checked; a ``tied`` fixture is
saved after ``share_components`` instead, as a user who saved that way has it, and is recorded from the model
in memory (the reference's own reload of such a save loses the embedding).

Each fixture says what its greedy answers must show (``stream``): ``ends`` (every answer ends with [EOS]),
``limit`` (every answer stops at the token limit, no [EOS]) or ``special`` (an answer holds a generated
[PAD], id 0, before it ends). The first seed and head bias, in order, that gives it is taken.

    /work/rxlm-venv/bin/python experiments/parity/make_rxlm_fixtures.py OUT [NAME ...]   # default: all
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rxlm.rxt.models import RxTAlpha
from rxlm.training.tokenizer import TokenizerTrainer, load_tokenizer_from_file

CORPUS = [
    "Lily found a red ball in the garden. She gave it to her friend Tom.",
    "Tom was happy. He played with the ball all day and then he went home.",
    "What did Lily find? She found a red ball in the garden near the tree.",
    "The cat sat on the mat. The dog ran after the cat and barked loudly.",
    "Where did Tom go? He went home after playing with the ball all day.",
] * 20

QUERIES = ["What did Lily find?", "Who got the ball?", "Where did Tom go?"]
SAVED_QUERY, SAVED_ANSWER = "What did Lily find?", "She found a red ball in the garden."


def configs() -> dict[str, dict]:
    """Two scaled-down shapes of the published cards, covering the supported options between them."""
    common = dict(num_layers=2, embed_dim=32, att_heads=4, seq_len=64, stm_size=8, use_flash_attention=False)
    decoder = dict(common, ff_dim=24, use_moe=True, num_experts=4, moe_top_k=2, moe_grouped_gemm=False,
                   self_att_type="sqa", cross_att_type="sqa", stateless_layers_config=[])
    encoder = dict(common, ff_dim=48, self_att_type="sqa", skip_memory_cross_attention=True)
    memory = dict(common, att_type="sqa", use_gated_residual=True, residual_per_slot_gate=True)
    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[MASK]", "[Q]", "[A]", "[T]"]
    return {
        # The published form: SQA with different head layouts per attention, one shared expert with
        # biases, the global MoE bias, no head norm, sigmoid per-slot elementwise gates.
        "alpha": dict(
            decoder=dict(decoder, att_groups=1, att_query_groups=2, cross_att_groups=4,
                         cross_att_query_groups=4, num_shared_experts=1),
            encoder=dict(encoder, att_groups=2, att_query_groups=2),
            memory=dict(memory, att_groups=2, att_query_groups=4, interlayer_att_groups=2,
                        interlayer_att_query_groups=2, residual_gate_type="elementwise",
                        use_tanh_residual_gate=False),
            specials=specials,
        ),
        # The other supported options: no shared expert, no MoE bias, an RMS head norm, no attention output
        # bias in decoder/encoder, tanh gates of the static and linear forms, a tokenizer without [T].
        "variant": dict(
            decoder=dict(decoder, att_groups=2, att_query_groups=2, cross_att_groups=2,
                         cross_att_query_groups=4, num_shared_experts=0, moe_bias_mode="off",
                         use_head_norm=True, head_norm_type="rms_norm", use_attention_output_bias=False),
            encoder=dict(encoder, att_groups=1, att_query_groups=4, use_attention_output_bias=False),
            memory=dict(memory, att_groups=4, att_query_groups=4, interlayer_att_groups=1,
                        interlayer_att_query_groups=2, residual_gate_type="linear",
                        use_tanh_residual_gate=True),
            specials=[t for t in specials if t != "[T]"],
        ),
        # rxlm's defaults where the published cards leave them: a dense SwiGLU decoder (use_moe=False; its
        # num_shared_experts=1 default then builds nothing), the static per-slot gate, sigmoid.
        "dense": dict(
            decoder=dict(common, ff_dim=40, self_att_type="sqa", cross_att_type="sqa", att_groups=2,
                         att_query_groups=2, stateless_layers_config=[]),
            encoder=dict(encoder, att_groups=2, att_query_groups=2),
            memory=dict(memory, att_groups=2, att_query_groups=2, interlayer_att_groups=2,
                        interlayer_att_query_groups=2, residual_gate_type="static", use_tanh_residual_gate=False),
            specials=specials,
        ),
        # Turns that stop at the token limit, saved after share_components (the tied save); the MoE with
        # rxlm's default shared expert and top-1 routing, a static tanh gate (rxlm's gate defaults).
        "limit-tied": dict(
            decoder=dict(decoder, att_groups=2, att_query_groups=2, moe_top_k=1),
            encoder=dict(encoder, att_groups=2, att_query_groups=2),
            memory=dict(memory, att_groups=2, att_query_groups=2, interlayer_att_groups=2,
                        interlayer_att_query_groups=2),
            specials=specials, stream="limit", tied=True,
        ),
        # A generated [PAD] (id 0) inside an answer, which the reference writes like any other token; dense.
        "special": dict(
            decoder=dict(common, ff_dim=40, att_groups=1, att_query_groups=2, stateless_layers_config=[]),
            encoder=dict(encoder, att_groups=1, att_query_groups=2),
            memory=dict(memory, att_groups=2, att_query_groups=4, interlayer_att_groups=1,
                        interlayer_att_query_groups=2, residual_gate_type="elementwise",
                        use_tanh_residual_gate=False),
            specials=specials, stream="special",
        ),
    }


def train_tokenizer(specials: list[str], directory: Path):
    trainer = TokenizerTrainer(vocab_size=320, model_type="byte-level-bpe", special_tokens=specials,
                               post_processor_pair="[BOS] $A [EOS] [BOS] $B:1 [EOS]:1")  # theirs lacks a space
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(CORPUS))
        trainer.train([str(corpus)], show_progress=False)
    trainer.save(str(directory))
    return load_tokenizer_from_file(str(directory / "tokenizer.json"))


@torch.no_grad()
def make_discriminative(model: RxTAlpha, generator: torch.Generator) -> None:
    """Perturb parameters that the init leaves constant and scale the routed experts up."""
    for name, param in model.named_parameters():
        if name.endswith(("ff.w1", "ff.w2")):
            param.mul_(10.0)
        elif param.numel() > 1 and bool((param == param.flatten()[0]).all()) or param.numel() == 1:
            if ".gate" in name or "gate." in name:  # residual gates: spread around 0 (not 3.0 = shut)
                param.copy_(torch.randn(param.shape, generator=generator))
            else:  # norm weights (1), biases (0): move them off their constants
                param.add_(0.3 * torch.randn(param.shape, generator=generator))


def build(config: dict, tokenizer, seed: int) -> RxTAlpha:
    torch.manual_seed(seed)
    ids = {"bos_token_id": "[BOS]", "eos_token_id": "[EOS]", "answer_token_id": "[A]",
           "query_token_id": "[Q]", "pad_token_id": "[PAD]"}
    tokenizer_config = {key: tokenizer.convert_tokens_to_ids(token) for key, token in ids.items()}
    vocab = len(tokenizer)
    model = RxTAlpha(dict(config["decoder"], vocab_size=vocab), dict(config["encoder"], vocab_size=vocab),
                     dict(config["memory"]), tokenizer_config, memory_attention_variant="self-interlayer")
    make_discriminative(model, torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():  # the tie below makes the decoder read the encoder's embedding
        model.decoder.model.embedding.weight.copy_(model.encoder.model.embedding.weight)
    return model


def load(directory: Path, tokenizer) -> RxTAlpha:
    model = RxTAlpha.from_pretrained(str(directory))
    model.set_tokenizer(tokenizer)
    model.share_components()
    model.prepare_stm_kv_cache = lambda: None  # the precompute raises on CPU (RXLM-QUIRKS.md)
    return model.eval()


def ids(encoded: dict) -> list[int]:
    return encoded["input_ids"][0].tolist()


@torch.no_grad()
def record(model: RxTAlpha, stm: torch.Tensor, max_new_tokens: int) -> tuple[dict, dict]:
    query = ids(model.tokenize_query(QUERIES[0]))
    answer_start = ids(model.tokenize_full_interaction(SAVED_QUERY, SAVED_ANSWER))[len(query) + 1:][:4]
    logit_ids = query + [model.answer_token_id] + answer_start
    update_ids = ids(model.tokenize_full_interaction(SAVED_QUERY, SAVED_ANSWER))

    model.load_stm_state(stm)
    logits = model(torch.tensor([logit_ids]), attention_mask=torch.ones(1, len(logit_ids), dtype=torch.long))
    ones = torch.ones(1, len(update_ids), dtype=torch.long)
    _, encoded = model.encoder(torch.tensor([update_ids]), attention_mask=ones)
    model.init_stm_state(torch.tensor([update_ids]), ones)
    tensors = {"stm": stm.clone(), "logits": logits.clone(), "encoded": encoded.clone(),
               "stm_after_update": model.export_stm_state()}

    model.load_stm_state(stm)
    streams = []
    for turn, text in enumerate(QUERIES):
        encoded = model.tokenize_query(text)
        limit = encoded["input_ids"].shape[1] + 1 + max_new_tokens
        streams.append(list(model.interact(**encoded, top_k=1, max_seq_len=limit, use_self_attn_cache=False)))
        tensors[f"stm_after_turn_{turn}"] = model.export_stm_state()
    records = {
        "logit_ids": logit_ids, "update_ids": update_ids, "queries": QUERIES,
        "saved_interaction": [SAVED_QUERY, SAVED_ANSWER], "max_new_tokens": max_new_tokens,
        "query_ids": [ids(model.tokenize_query(text)) for text in QUERIES], "streams": streams,
        "special_token_ids": {"bos": model.bos_token_id, "eos": model.eos_token_id, "query": model.query_token_id,
                              "answer": model.answer_token_id, "pad": model.pad_token_id},
    }
    return tensors, records


STREAMS = {  # what the greedy answers must show -> (the token whose head bias is searched, the biases tried)
    "ends": ("[EOS]", torch.arange(0.0, 3.0, 0.1)),
    "limit": ("[EOS]", torch.tensor([-10.0])),
    "special": ("[PAD]", torch.arange(0.0, 6.0, 0.2)),
}


def shows(records: dict, stream: str) -> bool:
    """Whether the three greedy answers (markers -1, -2 cut off) show what the fixture is for."""
    roles, answers = records["special_token_ids"], [s[:-2] for s in records["streams"]]
    if stream == "ends":  # >= 2 tokens, then [EOS], and not one answer to every query
        return all(len(a) >= 3 and a[-1] == roles["eos"] for a in answers) and len(set(map(tuple, answers))) > 1
    if stream == "limit":
        return all(len(a) == records["max_new_tokens"] and roles["eos"] not in a for a in answers)
    return any(roles["pad"] in a[:-1] for a in answers) and not any(a[0] == roles["pad"] for a in answers)


def prepared(model: RxTAlpha, tokenizer) -> RxTAlpha:
    """The model in memory, tied and ready to record (what a tied save cannot give back on reload)."""
    model.set_tokenizer(tokenizer)
    model.share_components()
    model.prepare_stm_kv_cache = lambda: None
    return model.eval()


def check_saved_keys(name: str, model: RxTAlpha, reference: Path, tied: bool) -> None:
    """RoPE tables are one module shared by every attention of a component, so they are stored once; they
    are recomputed from the config anyway. Every other tensor must be in the file, except the two that the
    tied save drops (and only those, when tied)."""
    dropped = {"encoder.model.embedding.weight", "memory_attention.model.stm.memory"} if tied else set()
    expected = {k for k in model.state_dict() if ".rope." not in k} - dropped
    saved = {k for k in load_file(str(reference / "model.safetensors")) if ".rope." not in k}
    if saved != expected:
        raise SystemExit(f"{name}: saved keys differ: missing {sorted(expected - saved)}, "
                         f"extra {sorted(saved - expected)}")


def make(name: str, config: dict, out: Path, seed: int) -> None:
    target = out / f"rxlm-{name}"
    reference = target / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(config["specials"], reference)
    stream, tied = config.get("stream", "ends"), config.get("tied", False)
    token, biases = STREAMS[stream]
    biased = tokenizer.convert_tokens_to_ids(token)
    # A trained model ends its answers; a random one does not. Move one token's head bias just enough that
    # the greedy answers show what the fixture is for (the first seed, in order, whose model has such a bias).
    for seed in range(seed, seed + 20):
        model = build(config, tokenizer, seed)
        stm = torch.randn(2, 1, 8, 32, generator=torch.Generator().manual_seed(seed + 2))
        for bias in biases:
            with torch.no_grad():
                model.decoder.model.head.bias[biased] = bias
            if tied:
                _, records = record(prepared(model, tokenizer), stm, max_new_tokens=12)
            else:
                model.save_pretrained(str(reference))
                _, records = record(load(reference, tokenizer), stm, max_new_tokens=12)
            if shows(records, stream) or stream == "ends" and all(len(s) == 3 for s in records["streams"]):
                break
        if shows(records, stream):
            break
    else:
        raise SystemExit(f"{name}: no seed and {token} bias give a {stream!r} stream")
    if tied:  # save_pretrained after share_components: what a user who tied first has on disk
        model.save_pretrained(str(reference))
    check_saved_keys(name, model, reference, tied)
    fresh, _ = record(prepared(model, tokenizer), stm, max_new_tokens=12)
    tensors, records = (fresh, records) if tied else record(load(reference, tokenizer), stm, max_new_tokens=12)
    if not torch.equal(fresh["logits"], tensors["logits"]):
        raise SystemExit(f"{name}: the reloaded model differs from the saved one")
    records["tied_save"] = tied
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target / "records.safetensors"))
    (target / "records.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"{name}: seed {seed}, vocab {len(tokenizer)}, {token} bias {float(bias):.1f}, "
          f"streams {records['streams']}")


FULL_SIZE = {
    # The shape of our `rxt-alpha-supervised` preset (fitted to the card's published counts) in the reference
    # format. No shared expert: one of the routed experts' size would add 3.5M to the decoder, 2.5% over the
    # card's 141M.
    "decoder_config": dict(num_layers=12, vocab_size=20000, embed_dim=256, ff_dim=384, att_heads=16, seq_len=256,
                           stm_size=256, use_flash_attention=False, use_moe=True, num_experts=36, moe_top_k=6,
                           num_shared_experts=0, att_groups=8, att_query_groups=8, cross_att_groups=8,
                           cross_att_query_groups=8, moe_grouped_gemm=False, stateless_layers_config=[]),
    "encoder_config": dict(num_layers=12, vocab_size=20000, embed_dim=256, ff_dim=784, att_heads=16, seq_len=256,
                           stm_size=256, use_flash_attention=False, att_groups=8, att_query_groups=8,
                           skip_memory_cross_attention=True),
    "memory_attention_config": dict(num_layers=12, embed_dim=256, att_heads=16, seq_len=256, stm_size=256,
                                    use_flash_attention=False, att_groups=8, att_query_groups=8,
                                    interlayer_att_groups=8, interlayer_att_query_groups=8, use_gated_residual=True,
                                    residual_gate_type="elementwise", use_tanh_residual_gate=False),
    "tokenizer_config": dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, query_token_id=5, answer_token_id=6),
    "memory_attention_variant": "self-interlayer",
}


def full_size_counts(out: Path) -> None:
    """The reference's parameter counts per component for FULL_SIZE, built on the meta device."""
    with torch.device("meta"):
        model = RxTAlpha(FULL_SIZE["decoder_config"], FULL_SIZE["encoder_config"],
                         FULL_SIZE["memory_attention_config"], FULL_SIZE["tokenizer_config"],
                         memory_attention_variant=FULL_SIZE["memory_attention_variant"])
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("decoder", "encoder", "memory_attention")}
    (out / "rxlm-full-size.json").write_text(json.dumps({"config": FULL_SIZE, "counts": counts}, indent=1) + "\n")
    print(f"full size: {counts}")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/parity")
    names = sys.argv[2:] or list(configs())
    for seed, (name, config) in enumerate(configs().items()):
        if name in names:
            make(name, config, out, seed=100 * (seed + 1))
    if not sys.argv[2:]:
        full_size_counts(out)


if __name__ == "__main__":
    main()
