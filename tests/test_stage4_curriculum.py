"""Stage 4's follow-up curriculum: a short history first, the whole episode later."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from rxmrl.training.distributed import DistEnv
from rxmrl.training.stages.batching import pad_episodes
from rxmrl.training.stages.memory_aware import (
    MemoryAwareStageConfig, first_follow_ups, memory_aware_step, scheduled_follow_ups, train_memory_aware,
)

sys.path.insert(0, str(Path(__file__).parent))
from supervised_helpers import episodes, quiet_loop, tiny_model  # noqa: E402

ENV = DistEnv()
CURRICULUM = [(0, 2), (400, 4), (800, 6)]


@pytest.mark.parametrize(("step", "expected"), [(0, 2), (399, 2), (400, 4), (799, 4), (800, 6), (5000, 6)])
def test_the_schedule_takes_the_last_entry_that_has_started(step, expected):
    assert scheduled_follow_ups(step, CURRICULUM, available=6) == expected


def test_without_a_curriculum_every_follow_up_trains_and_a_count_beyond_the_episode_is_refused():
    assert scheduled_follow_ups(123, [], available=6) == 6
    with pytest.raises(ValueError, match="asks for 6 follow-ups at step 800; the episodes have 4"):
        scheduled_follow_ups(800, CURRICULUM, available=4)


@pytest.mark.parametrize(("curriculum", "message"), [
    ([(10, 2), (400, 4)], "must start at step 0"),
    ([(0, 2), (0, 4)], "both increase"),
    ([(0, 4), (400, 2)], "both increase"),
    ([(0, 0), (400, 2)], ">= 1 follow-up"),
])
def test_a_curriculum_that_does_not_grow_from_step_0_is_refused(curriculum, message):
    with pytest.raises(ValueError, match=message):
        MemoryAwareStageConfig(follow_up_curriculum=curriculum)


def test_a_step_on_the_first_follow_ups_equals_a_step_on_episodes_that_end_there():
    long, short = pad_episodes(episodes(4, steps=4)), pad_episodes([e[:3] for e in episodes(4, steps=4)])
    config, model = MemoryAwareStageConfig(), tiny_model()
    cut = first_follow_ups(long, 2)
    assert cut["input_ids"].shape[0] == 3
    torch.manual_seed(0)
    loss_cut = memory_aware_step(model, cut, config)[0]
    torch.manual_seed(0)
    loss_short = memory_aware_step(model, {k: v[:, :, :short["input_ids"].shape[2]] for k, v in short.items()},
                                   config)[0]
    torch.manual_seed(0)
    loss_all = memory_aware_step(model, long, config)[0]
    assert torch.allclose(loss_cut, loss_short, atol=1e-6) and not torch.allclose(loss_cut, loss_all)


def test_training_follows_the_schedule_and_a_resume_keeps_its_place(tmp_path):
    config = MemoryAwareStageConfig(batch_size=4, follow_up_curriculum=[(0, 1), (3, 3)],
                                    **quiet_loop(2, schedule={"total_steps": 5}))
    rows = episodes(8, steps=4)
    train_memory_aware(tiny_model(), rows, config, ENV, run_dir=tmp_path)
    config.loop.max_steps = 5
    train_memory_aware(tiny_model(), rows, config, ENV, run_dir=tmp_path)  # resumes at step 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    counts = {r["step"]: r["follow_ups"] for r in records if "follow_ups" in r}
    assert counts == {1: 1.0, 2: 1.0, 3: 1.0, 4: 3.0, 5: 3.0}


@pytest.mark.parametrize("kind", ["elementwise", "linear", "slot-constant", "slot-linear"])
def test_a_gate_bias_makes_a_write_keep_that_share_of_the_old_memory(kind):
    from rxmrl.model import get_preset
    from rxmrl.model.memory import ResidualGate

    gate = ResidualGate(get_preset("nano", stm_slots=4, residual_gate=kind))
    with torch.no_grad():
        for parameter in gate.parameters():
            parameter.normal_()  # a gate that learned something
    gate.set_bias(-2.0)
    zero = torch.zeros(3, 4, 64)
    new, g = gate(zero + 1.0, zero - 1.0)  # STM + U = 0: only the bias speaks
    keep = 1 - torch.sigmoid(torch.tensor(-2.0))
    assert torch.allclose(g, 1 - keep) and torch.allclose(new, keep * 1.0 + (1 - keep) * -1.0)


def test_stage_4_sets_every_gate_bias_at_a_fresh_start_and_a_resume_keeps_the_trained_one(tmp_path):
    from rxmrl.model.memory import ResidualGate

    config = MemoryAwareStageConfig(batch_size=4, gate_bias=-2.0, **quiet_loop(2, schedule={"total_steps": 4}))
    model = tiny_model()
    gates = [m for m in model.memory_attention.modules() if isinstance(m, ResidualGate)]
    config.unfreeze_memory_attention_at = 2  # gates frozen for the first two steps: exactly the set bias
    train_memory_aware(model, episodes(8, steps=2), config, ENV, run_dir=tmp_path)
    assert gates and all(torch.equal(g.bias, torch.full_like(g.bias, -2.0)) for g in gates)
    config.loop.max_steps = 4
    train_memory_aware(model, episodes(8, steps=2), config, ENV, run_dir=tmp_path)  # memory attention trains
    trained = [g.bias.detach().clone() for g in gates]
    assert not all(torch.equal(t, torch.full_like(t, -2.0)) for t in trained)
    resumed = tiny_model()
    config.loop.max_steps = 4
    train_memory_aware(resumed, episodes(8, steps=2), config, ENV, run_dir=tmp_path)  # done: loads the checkpoint
    again = [m for m in resumed.memory_attention.modules() if isinstance(m, ResidualGate)]
    assert all(torch.equal(t, g.bias) for t, g in zip(trained, again))


def test_a_curriculum_longer_than_the_episodes_is_refused_before_any_stage_runs(tmp_path, capsys):
    from rxmrl.cli import main

    warmstart = Path(__file__).parents[1] / "experiments" / "warmstart.toml"
    code = main(["train", "supervised", "--config", str(warmstart), "--set", f"run_dir={tmp_path / 'run'}",
                 "--set", "stage4.follow_up_curriculum=[[0,2],[10,9]]"])
    assert code == 2 and not (tmp_path / "run").exists()
    assert "trains on 9 follow-ups; the episodes have data.curriculum_steps=6" in capsys.readouterr().err
