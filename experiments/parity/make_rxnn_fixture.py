"""Build a tiny random RxNN decoder (the format of the RxT-Alpha Mini decoder card) and record its outputs.

RxNN's package on PyPI (0.3.1) is an empty placeholder, so this script imports the library from a checkout of
its public repository (RxAI-dev/RxNN, Apache-2.0; version 0.2.171 was used), in a virtualenv of its own::

    PYTHONPATH=/path/to/RxNN/python/src /work/rxnn-venv/bin/python experiments/parity/make_rxnn_fixture.py \\
        tests/data/parity

It writes ``<out>/rxnn-decoder/``: ``reference/`` (``RxTDecoder.save_pretrained`` + the reference-format
``tokenizer.json`` of the rxlm-alpha fixture), ``records.safetensors`` (``stm [L, 1, S, D]`` and the decoder
``logits [1, T, V]`` of ``logit_ids`` read from it) and ``records.json`` (ids, queries, and the greedy answer
of each of three queries from that fixed STM: argmax of the reference's logits, full recompute). Constant
parameters (norm weights) are perturbed so a converter that drops them fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from rxnn.rxt.models import RxTDecoder

QUERIES = ["What did Lily find?", "Who got the ball?", "Where did Tom go?"]
CONFIG = dict(num_layers=2, embed_dim=32, ff_dim=24, att_heads=4, seq_len=64, stm_size=8, use_flash_attention=False,
              use_moe=True, num_experts=4, moe_top_k=2, self_att_type="sqa", cross_att_type="sqa", att_groups=2,
              att_query_groups=2, cross_att_query_groups=4, use_head_norm=True)


@torch.no_grad()
def greedy(model, ids: list[int], eos: int, max_new_tokens: int) -> list[int]:
    answer = []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([ids + answer]))
        answer.append(int(logits[0, -1].argmax()))
        if answer[-1] == eos:
            break
    return answer


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/parity")
    target, reference = out / "rxnn-decoder", out / "rxnn-decoder" / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "rxlm-alpha" / "reference" / "tokenizer.json", reference / "tokenizer.json")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(reference / "tokenizer.json"))
    ids_of = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos, answer_token = tokenizer.convert_tokens_to_ids("[EOS]"), "[A]"
    queries = [ids_of(f"[BOS][Q]{text}{answer_token}") for text in QUERIES]
    logit_ids = queries[0] + ids_of("She found")
    for seed in range(300, 320):
        torch.manual_seed(seed)
        model = RxTDecoder(**CONFIG, vocab_size=len(tokenizer.get_vocab())).eval()
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" in name:  # weights 1 / biases 0 at init
                    param.add_(0.3 * torch.randn(param.shape, generator=generator))
        stm = torch.randn(2, 1, 8, 32, generator=generator)
        model.model.stm.update_all(stm)
        base = float(model.model.head.bias[eos])
        for bias in torch.arange(0.0, 3.0, 0.1):  # as in the rxlm fixtures: end every answer with [EOS]
            with torch.no_grad():
                model.model.head.bias[eos] = base + bias
            answers = [greedy(model, q, eos, 12) for q in queries]
            if all(len(a) >= 2 and a[-1] == eos for a in answers) or all(len(a) == 1 for a in answers):
                break
        if all(len(a) >= 2 and a[-1] == eos for a in answers):
            break
    else:
        raise SystemExit("no seed and [EOS] bias end every answer")
    model.save_pretrained(str(reference))
    saved = {k for k in load_file(str(reference / "model.safetensors")) if ".rope." not in k}
    expected = {k for k in model.state_dict() if ".rope." not in k}
    if saved != expected:
        raise SystemExit(f"saved keys differ: {sorted(expected ^ saved)}")
    reloaded = RxTDecoder.from_pretrained(str(reference)).eval()
    reloaded.model.stm.update_all(stm)
    with torch.no_grad():
        logits = reloaded(torch.tensor([logit_ids]))
    if not torch.equal(logits, model(torch.tensor([logit_ids]))):
        raise SystemExit("the reloaded model differs from the saved one")
    answers = [greedy(reloaded, q, eos, 12) for q in queries]
    save_file({"stm": stm.contiguous(), "logits": logits.contiguous()}, str(target / "records.safetensors"))
    records = {"logit_ids": logit_ids, "queries": QUERIES, "query_ids": queries, "answers": answers,
               "max_new_tokens": 12}
    (target / "records.json").write_text(json.dumps(records, indent=1) + "\n")
    print(f"seed {seed}, answers {answers}")


if __name__ == "__main__":
    main()
