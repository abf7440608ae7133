"""Atomic checkpoints: a killed write never damages what is on disk; pruning keeps the last K and best."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from rxmrl.training.checkpoint import CheckpointManager, find_checkpoint, load_checkpoint, load_weights
from rxmrl.training.rng import get_rng_state, seed_everything, set_rng_state


class TiedModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.embedding.weight  # shared, as in RxT's tied embedding


def test_weights_and_state_round_trip_with_tied_weights(tmp_path):
    manager = CheckpointManager(tmp_path)
    model = TiedModel()
    path = manager.save(model, {"step": 3, "extra": {"curriculum_stage": 2}}, step=3)
    fresh = TiedModel()
    state = load_checkpoint(path, fresh)
    assert torch.equal(fresh.embedding.weight, model.embedding.weight)
    assert fresh.lm_head.weight is fresh.embedding.weight
    assert state == {"step": 3, "extra": {"curriculum_stage": 2}}


def test_keeps_the_last_k_step_checkpoints_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    model = nn.Linear(2, 2)
    for step in (1, 2, 3, 4):
        manager.save(model, {"step": step}, step, best=step == 2)
    assert manager.complete_steps() == [3, 4]
    assert manager.latest().name == "step-00000004"
    assert load_checkpoint(manager.best(), nn.Linear(2, 2))["step"] == 2
    manager.save(model, {"step": 4, "again": True}, 4)  # overwriting a step replaces it atomically too
    assert load_checkpoint(manager.latest(), nn.Linear(2, 2)) == {"step": 4, "again": True}


def test_a_process_killed_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    model = nn.Linear(3, 3)
    manager = CheckpointManager(tmp_path)
    manager.save(model, {"step": 5}, step=5)
    # A second process starts writing step 10 and is SIGKILLed after the weights, before the state file.
    script = textwrap.dedent(f"""
        import os, signal, torch
        from torch import nn
        import rxmrl.training.checkpoint as checkpoint
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.torch.save = killed
        checkpoint.CheckpointManager({str(tmp_path)!r}).save(nn.Linear(3, 3), {{"step": 10}}, step=10)
    """)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert process.returncode == -9, process.stderr.decode()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert any(name.startswith(".tmp-step-00000010") for name in leftovers)  # the half-written one
    assert manager.complete_steps() == [5] and manager.latest().name == "step-00000005"
    restored = nn.Linear(3, 3)
    assert load_checkpoint(manager.latest(), restored) == {"step": 5}
    assert torch.equal(restored.weight, model.weight)
    manager.save(model, {"step": 11}, step=11)  # the next save clears the debris
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_rng_state_restores_python_numpy_and_torch_streams():
    seed_everything(7)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(99)
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_a_warm_start_finds_the_latest_checkpoint_of_a_run_directory(tmp_path):
    manager = CheckpointManager(tmp_path / "run" / "checkpoints")
    models = [nn.Linear(2, 2) for _ in range(2)]
    for step, model in zip((1, 2), models):
        manager.save(model, {"step": step}, step)
    assert find_checkpoint(tmp_path / "run") == manager.latest()
    assert find_checkpoint(manager.latest()) == manager.latest()
    warm = load_weights(tmp_path / "run", nn.Linear(2, 2))
    assert torch.equal(warm.weight, models[1].weight)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint at"):
        find_checkpoint(tmp_path / "nowhere")
