"""The memory probe measures what memory carries, and a stage runs under 2-process gloo DDP like one process."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rxmrl.data import load_curriculum
from rxmrl.training.distributed import DistEnv, cleanup, init_distributed
from rxmrl.training.memory_probe import memory_matters
from rxmrl.training.stages.facts import fact_token_masks, weight_fact_tokens
from rxmrl.training.stages import JointStageConfig, episode_rows, train_joint
from rxmrl.training.stages.batching import next_token_loss, pad_episodes

sys.path.insert(0, str(Path(__file__).parent))
from supervised_helpers import quiet_loop, stories, tiny_model, tokenizer  # noqa: E402


def test_memory_probe_sees_no_gap_when_the_decoder_cannot_read_memory():
    episodes = load_curriculum(steps=2, split="validation", num_episodes=4).episodes
    model = tiny_model()
    reading = memory_matters(model, tokenizer(), episodes, batch_size=3)
    assert reading["loss_gap"] != 0.0 and reading["tokens"] > 0
    for prefix in ("", "fact_"):  # the bootstrap interval over episodes holds the token-averaged gap
        assert reading[f"{prefix}loss_gap_low"] <= reading[f"{prefix}loss_gap"] <= reading[f"{prefix}loss_gap_high"]
    assert reading["loss_gap_low"] < reading["loss_gap_high"]
    for layer in model.decoder.layers:  # cross-attention output zeroed: memory cannot reach the logits
        torch.nn.init.zeros_(layer.memory_cross_attn.o_proj.weight)
    blind = memory_matters(model, tokenizer(), episodes, batch_size=3)
    assert blind["loss_with_memory"] == blind["loss_reset_memory"]
    assert blind["acc_with_memory"] == blind["acc_reset_memory"]
    assert blind["fact_loss_with_memory"] == blind["fact_loss_reset_memory"]
    assert blind["loss_gap_low"] == blind["loss_gap_high"] == 0.0
    assert blind["tokens"] == reading["tokens"] and 0 < blind["fact_tokens"] < blind["tokens"]


def test_fact_tokens_are_the_fact_phrases_inside_follow_up_answers():
    episode = load_curriculum(steps=4, split="validation", num_episodes=1).episodes[0]
    rows = episode_rows(tokenizer(), [episode], 128)[0]
    masks = fact_token_masks(tokenizer(), episode, 128)
    assert not any(masks[0])  # the saved interaction answers no question about memory
    for (ids, _), mask, facts in zip(rows[1:], masks[1:], episode.facts, strict=True):
        assert len(mask) == len(ids)
        picked = tokenizer().decode([i for i, m in zip(ids, mask) if m]).lower()
        assert all(fact.text.lower() in picked for fact in facts), (picked, facts)


def test_fact_weight_scales_only_the_fact_tokens_in_the_follow_up_loss():
    episodes = load_curriculum(steps=3, split="validation", num_episodes=2).episodes
    rows = episode_rows(tokenizer(), episodes, 128)
    weighted = weight_fact_tokens(tokenizer(), episodes, rows, 5.0, 128)
    for episode, plain, heavy in zip(episodes, rows, weighted, strict=True):
        for (ids, targets), (same_ids, weights), mask in zip(plain, heavy, fact_token_masks(tokenizer(), episode, 128),
                                                             strict=True):
            assert same_ids == ids
            assert weights == [t * (5.0 if m else 1) for t, m in zip(targets, mask, strict=True)]
        assert any(w == 5.0 for _, weights in heavy for w in weights)
    # the loss is the weighted mean of the per-token losses
    batch = pad_episodes([weighted[0]])
    step = {key: value[1] for key, value in batch.items()}
    logits = torch.randn(1, step["input_ids"].shape[1], tokenizer().vocab_size, generator=torch.Generator().manual_seed(0))
    nll = torch.nn.functional.cross_entropy(logits[0, :-1], step["input_ids"][0, 1:], reduction="none")
    w = step["target_weight"][0, 1:] * step["attention_mask"][0, 1:]
    loss, _ = next_token_loss(logits, step)
    assert torch.allclose(loss, (nll * w).sum() / w.sum())
    assert not torch.allclose(loss, nll[w > 0].mean())


def test_fact_weight_refuses_episodes_without_facts():
    episodes = [dataclasses.replace(e, facts=None)
                for e in load_curriculum(steps=2, split="validation", num_episodes=2).episodes]
    with pytest.raises(ValueError, match="facts"):
        weight_fact_tokens(tokenizer(), episodes, episode_rows(tokenizer(), episodes, 128), 3.0, 128)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(env: DistEnv, batch_size: int, run_dir: Path) -> list[float]:
    config = JointStageConfig(batch_size=batch_size, memory_noise=0.0, **quiet_loop(4))
    return train_joint(tiny_model(), stories(16), config, env, run_dir=run_dir).losses


def _worker(rank: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed(device="cpu")
    losses = _run(env, 2, Path(run_dir))
    torch.save(losses, Path(run_dir) / f"losses-{rank}.pt")
    cleanup()


def test_two_process_gloo_ddp_trains_a_stage_and_checkpoints_once(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    rank_losses = [torch.load(tmp_path / f"losses-{rank}.pt") for rank in (0, 1)]
    assert all(len(losses) == 4 for losses in rank_losses)
    assert rank_losses[0] != rank_losses[1]  # each rank trained on its own shard of the global batch
    assert (tmp_path / "checkpoints" / "step-00000004").is_dir()
    metrics = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 4  # written once, by rank 0
