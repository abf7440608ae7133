"""The four supervised stages on a tiny model: losses fall, only the scheduled parts train, and a stopped
stage resumes with the same losses as an uninterrupted one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rxmrl.special_tokens import EOS_ID, MASK_ID, PAD_ID, SPECIAL_TOKEN_IDS
from rxmrl.training.distributed import DistEnv
from rxmrl.training.stages import (
    InteractionStageConfig, JointStageConfig, MemoryAttentionStageConfig, MemoryAwareStageConfig, pool_mean, pool_segments,
    train_joint, train_memory_attention, train_memory_aware, trainable_groups,
)
from rxmrl.training.stages.memory_attention import slot_cosine
from rxmrl.training.stages.batching import mask_tokens, next_token_loss, pad_episodes, projected_next_token_loss, trim

sys.path.insert(0, str(Path(__file__).parent))
from supervised_helpers import (  # noqa: E402
    changed, episodes, first_and_last, group_snapshot, interactions, quiet_loop, stories, tiny_model,
)

ENV = DistEnv()


def test_joint_lm_pretraining_lowers_both_losses_and_leaves_memory_attention_alone():
    model = tiny_model()
    before = group_snapshot(model)
    result = train_joint(model, stories(), JointStageConfig(batch_size=8, **quiet_loop(30)), ENV)
    first, last = first_and_last(result.losses)
    assert last < 0.8 * first, result.losses
    assert changed(before, model) == {"embedding", "encoder", "decoder", "memory_cross_attention"}


def test_interaction_sft_learns_to_end_answers_with_eos():
    rows = interactions(answer_only=True)
    for ids, targets in rows:
        assert ids[-1] == EOS_ID and targets[-1] == 1  # [EOS] is a target even when the answer is cut
        assert targets[: ids.index(4) + 1] == [0] * (ids.index(4) + 1)  # nothing up to [A] is a target
    result = train_joint(tiny_model(), rows, InteractionStageConfig(batch_size=8, answer_only=True, **quiet_loop(30)), ENV)
    first, last = first_and_last(result.losses)
    assert last < 0.8 * first, result.losses


def test_mlm_masking_never_touches_padding_or_special_tokens():
    ids = torch.tensor([[1, 3, 10, 11, 12, 4, 13, 2, 0, 0]] * 64)
    mask = ids != PAD_ID
    masked, selected = mask_tokens(ids, mask, 0.5, vocab_size=100, generator=torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(sorted(SPECIAL_TOKEN_IDS)))
    assert not selected[special].any() and selected.any()
    assert torch.equal(masked[~selected], ids[~selected])
    share_masked = (masked[selected] == MASK_ID).float().mean()
    assert 0.7 < share_masked < 0.9  # 80% [MASK], the rest random or kept


def test_segment_pooling_gives_one_token_per_slot_when_slots_outnumber_tokens_and_ignores_padding():
    encoded = torch.randn(2, 3, 6, 4)  # [B, L, T, D]
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    pooled = pool_segments(encoded, mask, slots=6)
    assert torch.allclose(pooled[0], encoded[0])  # S = T: the token-per-slot target
    assert torch.allclose(pooled[1, :, ::2], encoded[1, :, :3])  # 3 tokens over 6 slots: each twice
    changed_padding = encoded.clone()
    changed_padding[1, :, 3:] = 1e3
    assert torch.allclose(pool_segments(changed_padding, mask, 2), pool_segments(encoded, mask, 2))
    assert torch.allclose(pool_segments(encoded, mask, 2)[0, :, 0], encoded[0, :, :3].mean(1))  # spans
    assert torch.allclose(pool_mean(encoded, mask, 5)[1, :, 4], encoded[1, :, :3].mean(1))


def test_slot_centred_cosine_exposes_a_collapsed_memory_that_the_plain_cosine_rewards():
    shared = torch.randn(1, 1, 1, 16) * 5
    target = shared + torch.randn(2, 2, 8, 16)  # [B, L, S, D]: slots differ around a shared direction
    collapsed = target.mean(2, keepdim=True).expand_as(target)  # every slot the same vector
    assert slot_cosine(collapsed, target, 0.0) > 0.8  # the plain cosine looks fine
    assert abs(slot_cosine(collapsed, target, 1.0)) < 0.05  # nothing slot-specific is kept
    assert slot_cosine(target, target, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("pooling", ["segments", "mean"])
def test_memory_attention_pretraining_raises_the_cosine_to_its_target_and_trains_nothing_else(pooling):
    model = tiny_model()
    before = group_snapshot(model)
    config = MemoryAttentionStageConfig(batch_size=4, pooling=pooling, **quiet_loop(40, lr=1e-2))
    result = train_memory_attention(model, episodes(8, steps=2), config, ENV)
    first, last = first_and_last(result.losses)  # loss = −cosine
    assert -last > -first + 0.2, result.losses  # e.g. 0.2 -> 0.5 in 40 steps
    assert changed(before, model) == {"memory_attention"}


def test_memory_aware_training_unfreezes_decoder_then_memory_attention_then_encoder(tmp_path):
    rows = episodes(8, steps=2)
    config = MemoryAwareStageConfig(batch_size=4, unfreeze_memory_attention_at=3, unfreeze_encoder_at=6,
                                    **quiet_loop(3, schedule={"total_steps": 9}))
    model = tiny_model()
    before = group_snapshot(model)
    first = train_memory_aware(model, rows, config, ENV, run_dir=tmp_path)
    assert changed(before, model) == {"decoder", "memory_cross_attention"}
    for steps, expected in ((6, {"memory_attention"}), (9, {"memory_attention", "encoder", "embedding"})):
        before = group_snapshot(model)
        config.loop.max_steps = steps
        train_memory_aware(model, rows, config, ENV, run_dir=tmp_path)  # resumes from the last checkpoint
        assert changed(before, model) == {"decoder", "memory_cross_attention"} | expected
    assert trainable_groups(0, config, ["decoder", "encoder"]) == ["decoder"]
    assert len(first.losses) == 3


def test_before_unfreeze_decoder_at_only_memory_cross_attention_of_the_decoder_trains(tmp_path):
    rows = episodes(8, steps=2)
    config = MemoryAwareStageConfig(batch_size=4, unfreeze_decoder_at=2,
                                    **quiet_loop(2, schedule={"total_steps": 4}))
    model = tiny_model()
    before = group_snapshot(model)
    train_memory_aware(model, rows, config, ENV, run_dir=tmp_path)
    assert changed(before, model) == {"memory_cross_attention", "memory_attention", "encoder", "embedding"}
    before = group_snapshot(model)
    config.loop.max_steps = 4
    train_memory_aware(model, rows, config, ENV, run_dir=tmp_path)
    assert "decoder" in changed(before, model)
    with pytest.raises(ValueError, match="unfreeze_"):
        MemoryAwareStageConfig(unfreeze_decoder_at=-1)


def test_memory_aware_training_lowers_the_follow_up_loss():
    config = MemoryAwareStageConfig(batch_size=4, **quiet_loop(30))
    result = train_memory_aware(tiny_model(), episodes(16, steps=2), config, ENV)
    first, last = first_and_last(result.losses)
    assert last < 0.8 * first, result.losses


def test_projecting_only_the_answer_positions_gives_the_full_projection_loss_and_gradients():
    model = tiny_model()
    batch = trim({key: value[1] for key, value in pad_episodes(episodes(4, steps=2)).items()})
    batch["target_weight"] = batch["target_weight"] * (1 + 4 * (torch.arange(batch["input_ids"].shape[1]) % 3 == 0))
    stm = model.initial_stm(4, torch.Generator().manual_seed(0))
    results = []
    for projected in (False, True):
        model.zero_grad()
        hidden, _ = model.decoder.features(batch["input_ids"], stm, attention_mask=batch["attention_mask"])
        head = model.decoder.lm_head
        loss, accuracy = (projected_next_token_loss(hidden, head, batch) if projected
                          else next_token_loss(head(hidden), batch))
        loss.backward()
        grads = [p.grad.clone() for p in model.decoder.parameters() if p.grad is not None]
        results.append((loss.detach(), accuracy, grads))
    (full, full_acc, full_grads), (part, part_acc, part_grads) = results
    assert (batch["attention_mask"][:, 1:] & (batch["target_weight"][:, 1:] == 0)).any()  # prompts are skipped
    torch.testing.assert_close(part, full)
    assert part_acc == full_acc
    assert len(part_grads) == len(full_grads) > 0
    for a, b in zip(part_grads, full_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_episodes_of_a_batch_step_in_lockstep():
    batch = pad_episodes(episodes(3, steps=4))
    assert batch["input_ids"].shape[:2] == (5, 3)  # [N + 1, B, T]
    assert (batch["input_ids"][:, :, 0] == 1).all()  # every interaction starts with [BOS]


def test_a_stopped_stage_resumes_with_the_same_losses_as_an_uninterrupted_run(tmp_path):
    rows = stories(24)

    def run(run_dir: Path, max_steps: int) -> list[float]:
        config = JointStageConfig(batch_size=4, **quiet_loop(max_steps, schedule={"total_steps": 8}))
        return train_joint(tiny_model(), rows, config, ENV, run_dir=run_dir).losses  # fresh model each time

    uninterrupted = run(tmp_path / "once", 8)
    assert len(run(tmp_path / "twice", 4)) == 4
    resumed = run(tmp_path / "twice", 8)
    assert resumed == uninterrupted[4:]
