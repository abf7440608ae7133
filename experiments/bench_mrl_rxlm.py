"""Times one MRL epoch of the reference framework (rxlm 0.3.80) on bench_mrl.py's workload; prints one JSON line.

Run ONLY with the separate rxlm virtualenv (see /work/shared/RXLM-QUIRKS.md; rxlm is never our dependency and
none of its code is copied here: it is driven through its public API, and its methods are timed by wrapping
them from the outside)::

    /work/rxlm-venv/bin/python experiments/bench_mrl_rxlm.py [--workload FILE] [--answer-tokens 80] [--threads 1]

``experiments/bench_mrl.py --reference-python /work/rxlm-venv/bin/python`` runs it as a subprocess and hands it
``--workload``: a JSON file with our tokenizer (``tokenizer.json``) and the very episodes our epoch trains on
(texts), so both frameworks tokenise and play the same conversations. Without it the script makes a synthetic
dataset of the same shape (its own word-level tokenizer, random words of similar lengths).

The workload, as in bench_mrl.py: an RxT of dim 128, 4 layers, 4 heads (SQA: 2 query / 2 key-value heads in
every attention), a MoE decoder of 4 experts top-2 (hidden 256, no shared expert, no MoE bias), a dense
encoder (hidden 384), self-interlayer memory attention with sigmoid per-slot elementwise gates, 64 STM
slots, the tokenizer's vocabulary (or ``--vocab-size``: 5000 in the issue; our embedded tokenizer, asked for
5000, has 1178 tokens); 32 episodes x 4 follow-ups (cumulative strategy) in batches of 16, 10 update passes,
top-k 50 sampling, lr 5e-5 (critic 1e-4), no weight decay; trainable: decoder, its memory cross-attention,
memory attention and the critic (encoder and the shared embedding frozen, as ours); the critic is a copy of
the encoder with rxlm's value head. The printed parameter counts differ a little from ours by design
(rxlm's LM head has a bias, its memory attention no slot identities, its critic head is a gated unit).

Deviations forced by rxlm (on CPU or at all), each also listed in the printed JSON under ``deviations``:

1. ``use_flash_attention=False`` in every component and ``moe_grouped_gemm=False`` (no flash-attn /
   grouped_gemm on CPU).
2. ``stateless_layers_config=[]`` on the decoder (else its self-attention cache reset fails on None).
3. The STM key/value precompute (``prepare_stm_kv_cache``) raises a TypeError (its ``split_kv_head`` call
   has one argument too many): it is made to return None, so the decoder projects the STM keys/values at
   every generated token (same logits; a little more work for rxlm: 4 layers x 64 slots x 2 projections
   per token).
4. The answer-length limit: rxlm generates until a row's query + answer fills the padded width
   ``max_seq_len`` (there is no separate answer limit), so ``max_seq_len`` = mean tokenised follow-up query
   length (with [BOS][Q]) + 1 ([A]) + ``--answer-tokens``: rows with longer queries get shorter answers and
   vice versa, the mean is the limit (and at least the longest query + [A] + 1 token: its sampler writes [A]
   after the query and indexes past the width otherwise). The generated tokens are counted and reported,
   and the comparison is per answer token. The same width pads every query, answer and written interaction
   (rxlm pads to ``max_seq_len``; the critic's input to ``critic_max_len`` = 512, our critic's limit).
5. ``train_epoch`` updates on ``trajectories[:-1]``: every collected batch but the last (here 16 of the 32
   episodes). By default its ``rl_step`` is handed the whole epoch's trajectories instead, so the update
   passes cover the same 32 episodes as ours (``--as-shipped`` keeps rxlm's behaviour; the JSON reports the
   episodes updated on).
6. Freezing: rxlm's unfreeze strategies have no "decoder + memory, encoder frozen" stage, so the stage's
   ``unfreeze_epoch`` hook (a callable, part of its curriculum API) sets ``requires_grad`` to ours.
7. ``separate_memory_lr=True`` (with every learning rate 5e-5): the other optimizer layout lists the
   embedding's parameters twice and AdamW refuses to build.
8. ``use_amp=True`` with ``dtype=float32``: without AMP its ``_move_batch`` casts token ids to float32 and
   ``smart_concat``'s gather fails; CPU autocast does not support float32 and switches itself off, and the
   gradient scalers disable themselves without CUDA, so the run is plain float32, as ours on CPU.
9. Its self-attention KV cache is used while generating (``use_self_attn_cache=True``, its default and its
   fast path); the quirks file notes its stream differs from full recompute, which does not change the
   amount of work.
10. Memory warm-up off, no random STM resets (every episode starts from a fresh STM), no replay buffer, no
    evaluation dataset, no TensorBoard writer (``log_dir=None``): the epoch is collect + update, as ours.

Timings (seconds, ``time.perf_counter`` around its methods): ``rollout`` = ``collect_trajectories`` (memory
writes, generation, rewards) + ``get_pre_update_log_probs(for_ref_model=True)`` (reference log-probs) +
``_critic_values_rewards_and_dones`` (critic values) + the advantages; ``update_passes`` = each
``rl_step`` call (one per update pass); ``epoch`` = ``train_epoch``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[Q]", "[A]", "[T]", "[MASK]"]  # ids 0..6, as our tokenizer's


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default=None, help="JSON from bench_mrl.py: tokenizer file + episode texts")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ppo-epochs", type=int, default=10)
    parser.add_argument("--answer-tokens", type=int, default=80)
    parser.add_argument("--critic-max-len", type=int, default=512)
    parser.add_argument("--vocab-size", type=int, default=None, help="model vocabulary rows (default: the tokenizer's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-shipped", action="store_true",
                        help="keep rxlm's update on trajectories[:-1] (all batches but the last)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ data
def synthetic_workload(episodes: int, steps: int, seed: int) -> dict:
    """Episodes of random words, lengths like the embedded curriculum's (queries ~9, answers ~35 words)."""
    rng = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(f"w{rng.randrange(4900)}" for _ in range(rng.randint(low, high)))

    return {"tokenizer": None, "episodes": [
        {"query": words(7, 12), "answer": words(30, 45),
         "interactions": [{"query": words(6, 14), "answer": words(12, 30)} for _ in range(steps)]}
        for _ in range(episodes)]}


def word_tokenizer(vocab_size: int = 5000):
    """A word-level HF tokenizer: the specials at ids 0..6, then w0, w1, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": len(SPECIALS) + i for i in range(vocab_size - len(SPECIALS))})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[MASK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(SPECIALS)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[MASK]")


def file_tokenizer(path: str):
    """Our byte-level BPE ``tokenizer.json`` as an HF tokenizer (same ids, same specials)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=path, pad_token="[PAD]", unk_token="[MASK]")


# ----------------------------------------------------------------------------------------------- model
def model_configs(vocab: int, seq_len: int) -> tuple[dict, dict, dict]:
    """Decoder, encoder and memory-attention configs of bench_mrl.py's model in rxlm's terms."""
    common = dict(num_layers=4, embed_dim=128, att_heads=4, seq_len=seq_len, stm_size=64, use_flash_attention=False)
    decoder = dict(common, vocab_size=vocab, ff_dim=256, use_gated=True, ff_activation="silu", use_moe=True,
                   num_experts=4, moe_top_k=2, num_shared_experts=0, moe_bias_mode="off", moe_grouped_gemm=False,
                   self_att_type="sqa", cross_att_type="sqa", att_groups=2, att_query_groups=2,
                   cross_att_groups=2, cross_att_query_groups=2, use_attention_output_bias=False,
                   stateless_layers_config=[])
    encoder = dict(common, vocab_size=vocab, ff_dim=384, use_gated=True, ff_activation="silu",
                   self_att_type="sqa", att_groups=2, att_query_groups=2, skip_memory_cross_attention=True,
                   use_attention_output_bias=False)
    memory = dict(common, att_type="sqa", att_groups=2, att_query_groups=2, interlayer_att_type="sqa",
                  interlayer_att_groups=2, interlayer_att_query_groups=2, use_gated_residual=True,
                  residual_per_slot_gate=True, residual_gate_type="elementwise", use_tanh_residual_gate=False)
    return decoder, encoder, memory


def build_models(vocab: int, seq_len: int, batch: int):
    from rxlm.rxt.models import RxTAlpha
    from rxlm.training.models import MrlActorModel, MrlCriticModel

    decoder, encoder, memory = model_configs(vocab, seq_len)
    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "query_token_id": 3, "answer_token_id": 4}
    rxt = RxTAlpha(decoder, encoder, memory, ids, memory_attention_variant="self-interlayer")
    rxt.share_components()
    rxt.set_batch_mode(True, batch)
    reference = copy.deepcopy(rxt)
    actor = MrlActorModel(rxt.encoder, rxt.decoder, rxt.memory_attention)
    reference_actor = MrlActorModel(reference.encoder, reference.decoder, reference.memory_attention)
    critic = MrlCriticModel(copy.deepcopy(rxt.encoder), embed_dim=128)
    return actor, reference_actor, critic


def disable_stm_kv_precompute(actor) -> bool:
    """Deviation 3: returns whether the precompute raised (and is now disabled)."""
    try:
        with torch.no_grad():
            actor.prepare_stm_kv_cache()
        return False
    except TypeError:
        actor.prepare_stm_kv_cache = lambda: None
        return True


def count(module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def freeze_like_ours(actor):
    """Deviation 6: decoder (its memory cross-attention included) and memory attention train; the encoder and
    the shared embedding stay frozen (our bench's ``trainable``)."""

    def hook(epoch, trainer) -> None:
        for p in actor.encoder.parameters():
            p.requires_grad_(False)
        for p in actor.decoder.parameters():
            p.requires_grad_(True)
        for p in actor.memory_attention.parameters():
            p.requires_grad_(True)
        for p in actor.encoder.model.embedding.parameters():  # shared with the decoder
            p.requires_grad_(False)
    return hook


# ----------------------------------------------------------------------------------------------- timing
class Timers:
    """Wraps bound methods of one trainer with ``perf_counter`` accumulators (its code is left untouched)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, list[float]] = {}

    def wrap(self, obj, name: str, label: str, when=None):
        original = getattr(obj, name)

        def timed(*args, **kwargs):
            if when is not None and not when(*args, **kwargs):
                return original(*args, **kwargs)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[label] = self.seconds.get(label, 0.0) + elapsed
                self.calls.setdefault(label, []).append(elapsed)
        setattr(obj, name, timed)


def keep_result(obj, name: str, store: dict, key: str, when=None) -> None:
    """Wrap ``obj.name`` so that its return value is also kept in ``store[key]``."""
    original = getattr(obj, name)

    def kept(*args, **kwargs):
        result = original(*args, **kwargs)
        if when is None or when(*args, **kwargs):
            store[key] = result
        return result
    setattr(obj, name, kept)


def answer_tokens(trajectories) -> int:
    """Generated tokens over the epoch: each action's mask minus its leading [A]."""
    return int(sum(int(step["action"]["attention_mask"].sum()) - step["action"]["attention_mask"].shape[0]
                   for episode in trajectories for step in episode["steps"]))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import rxlm
    from rxlm.training.dataset import MrlCurriculumDataset
    from rxlm.training.mrl import MRLTrainer, MrlStrategy
    from rxlm.training.reward import MrlRewardModel
    from rxlm.training.rl import IMPOAlgorithm

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    workload = (json.loads(Path(args.workload).read_text()) if args.workload
                else synthetic_workload(args.episodes, args.steps, args.seed))
    tokenizer = file_tokenizer(workload["tokenizer"]) if workload["tokenizer"] else word_tokenizer()
    episodes = [dict(e, interactions=e["interactions"][:args.steps]) for e in workload["episodes"]]
    query_lengths = [2 + len(tokenizer(i["query"], add_special_tokens=False)["input_ids"])
                     for e in episodes for i in e["interactions"]]
    # deviation 4; its sampler writes [A] after the query, so the longest query must leave room for it
    max_seq_len = max(round(statistics.mean(query_lengths)) + 1 + args.answer_tokens, max(query_lengths) + 2)
    seq_len = max(max_seq_len, args.critic_max_len)  # RoPE tables: the critic reads critic_max_len tokens

    actor, reference, critic = build_models(max(args.vocab_size or 0, len(tokenizer)), seq_len, args.batch)
    precompute_disabled = disable_stm_kv_precompute(actor) | disable_stm_kv_precompute(reference)
    dataset = MrlCurriculumDataset(episodes, tokenizer, max_seq_len=max_seq_len)
    reward = MrlRewardModel(actor.encoder.model.embedding)
    config = dict(lr=5e-5, separate_memory_lr=True, memory_lr=5e-5, memory_attn_lr=5e-5,  # deviation 7
                  critic_lr=1e-4, critic_encoder_lr=1e-4, weight_decay=0.0, critic_weight_decay=0.0,
                  max_seq_len=max_seq_len, critic_max_len=args.critic_max_len, update_epochs=args.ppo_epochs,
                  pad_token_id=0, end_token_id=2, answer_token_id=4, callbacks=[], freeze_embeddings=True,
                  use_memory_warmup=False, use_self_attn_cache=True)
    trainer = MRLTrainer(actor, critic, reference, reward, torch.device("cpu"), config, IMPOAlgorithm(),
                         sampler_config=dict(temperature=1.0, top_k=50, top_p=None), log_dir=None,
                         use_amp=True, dtype=torch.float32)  # deviation 8

    timers, captured = Timers(), {}
    keep_result(trainer, "collect_trajectories", captured, "collected")
    keep_result(trainer, "get_pre_update_log_probs", captured, "with_reference",
                when=lambda *a, **k: k.get("for_ref_model"))
    updated = {"episodes": 0}
    rl_step = trainer.rl_step

    def rl_step_on(trajectories, *a, **k):  # deviation 5: the whole epoch, unless --as-shipped
        if not args.as_shipped:
            trajectories = captured["with_reference"]
        updated["episodes"] = sum(episode["steps"][0]["action"]["input_ids"].shape[0] for episode in trajectories)
        return rl_step(trajectories, *a, **k)
    trainer.rl_step = rl_step_on
    for obj, name, label, when in (
            (trainer, "collect_trajectories", "collect", None),
            (trainer, "generate_answer", "collect.generate", None),
            (trainer, "compute_reward", "collect.reward", None),
            (trainer, "get_pre_update_log_probs", "reference", lambda *a, **k: k.get("for_ref_model")),
            (trainer, "_critic_values_rewards_and_dones", "critic", None),
            (trainer.rl_algorithm, "calculate_advantages", "advantages", None),
            (trainer, "rl_step", "update_pass", None),
            (trainer, "train_epoch", "epoch", None)):
        timers.wrap(obj, name, label, when)

    stage = dict(steps=args.steps, epochs=1, dataset=dataset, eval_dataset=None,
                 strategy=MrlStrategy.MULTI_STEP_STRATEGY, unfreeze_epoch=freeze_like_ours(actor),
                 random_resets=False, use_memory_warmup=False)
    wall = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(autocast|pin_memory).*")
        trainer([stage], batch_size=args.batch)
    wall = time.perf_counter() - wall

    s = timers.seconds
    rollout = s["collect"] + s.get("reference", 0.0) + s["critic"] + s.get("advantages", 0.0)
    passes = timers.calls["update_pass"]
    tokens = answer_tokens(captured["collected"])
    print(json.dumps({
        "framework": f"rxlm {getattr(rxlm, '__version__', '0.3.80')}", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "estimator": "impo", "group_size": 1,
        "episodes": len(episodes), "steps": args.steps, "batch": args.batch, "ppo_epochs": len(passes),
        "rollout_s": rollout, "update_pass_s": sum(passes) / len(passes), "update_s": sum(passes),
        "epoch_s": s["epoch"], "wall_s": wall, "answer_tokens": tokens, "answers": len(episodes) * args.steps,
        "updated_episodes": updated["episodes"], "max_seq_len": max_seq_len,
        "parts": {"generation_s": s.get("collect.generate", 0.0), "reward_s": s.get("collect.reward", 0.0),
                  "collect_s": s["collect"], "reference_s": s.get("reference", 0.0), "critic_s": s["critic"]},
        "parameters": {"actor": count(actor), "critic": count(critic)},
        "deviations": [d for d, on in (
            ("no flash attention, no grouped_gemm", True), ("stateless_layers_config=[]", True),
            ("STM K/V precompute disabled (raised TypeError)", precompute_disabled),
            (f"answer limit via max_seq_len={max_seq_len} (mean query {statistics.mean(query_lengths):.1f} + [A] "
             f"+ {args.answer_tokens})", True),
            ("update on all collected batches, not trajectories[:-1]", not args.as_shipped),
            ("requires_grad set by the unfreeze_epoch hook (encoder + embedding frozen)", True),
            ("separate_memory_lr=True (the shared layout lists the embedding twice)", True),
            ("use_amp=True, dtype float32 (its non-AMP path casts ids to float)", True)) if on],
    }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
