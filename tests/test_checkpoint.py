"""Atomic checkpoints: a killed write never damages what is on disk; pruning keeps the last K and best."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from rxmrl.training.checkpoint import CheckpointManager, load_checkpoint
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
    assert any(name.startswith(".step-00000010.tmp-") for name in leftovers)  # the half-written one
    assert manager.complete_steps() == [5] and manager.latest().name == "step-00000005"
    restored = nn.Linear(3, 3)
    assert load_checkpoint(manager.latest(), restored) == {"step": 5}
    assert torch.equal(restored.weight, model.weight)
    manager.save(model, {"step": 11}, step=11)  # the next save clears the dead writer's debris
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())


def test_rng_state_restores_python_numpy_and_torch_streams():
    seed_everything(7)
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(99)
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_the_latest_complete_checkpoint_is_the_highest_step(tmp_path):
    manager = CheckpointManager(tmp_path / "run" / "checkpoints")
    models = [nn.Linear(2, 2) for _ in range(2)]
    for step, model in zip((1, 2), models):
        manager.save(model, {"step": step}, step)
    (manager.directory / "step-00000003").mkdir()  # a folder without the files is no checkpoint
    assert manager.latest() == manager.directory / "step-00000002"
    warm = nn.Linear(2, 2)
    assert load_checkpoint(manager.latest(), warm)["step"] == 2
    assert torch.equal(warm.weight, models[1].weight)


EXIT_BETWEEN_THE_RENAMES = """
import os, sys
from torch import nn
import rxmrl.runtime as runtime
from rxmrl.training.checkpoint import CheckpointManager

runtime._renameat2 = None  # a system without the atomic exchange: the two-rename fallback
real_replace = os.replace
def replace(source, target):
    real_replace(source, target)
    if ".old-" in os.fspath(target):  # the old folder is aside, the new one not yet in place
        os._exit(3)
os.replace = replace
torch_model = nn.Linear(3, 3)
CheckpointManager(sys.argv[1]).save(torch_model, {"step": 5, "again": True}, step=5)
"""


def test_an_exit_between_the_two_renames_of_an_overwrite_leaves_a_loadable_checkpoint(tmp_path):
    model = nn.Linear(3, 3)
    manager = CheckpointManager(tmp_path)
    manager.save(model, {"step": 5}, step=5)
    process = subprocess.run([sys.executable, "-c", EXIT_BETWEEN_THE_RENAMES, str(tmp_path)], capture_output=True)
    assert process.returncode == 3, process.stderr.decode()
    assert not (tmp_path / "step-00000005").exists()  # the window: the step is aside, under an .old- name
    assert manager.latest() == tmp_path / "step-00000005"  # the reader puts it back
    restored = nn.Linear(3, 3)
    assert load_checkpoint(manager.latest(), restored) == {"step": 5}  # the old, complete version
    assert torch.equal(restored.weight, model.weight)
    manager.save(model, {"step": 6}, step=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005", "step-00000006"]  # debris gone


def test_re_saving_a_step_swaps_the_folders_in_one_step_and_leaves_no_debris(tmp_path, monkeypatch):
    import rxmrl.runtime as runtime

    if runtime._renameat2 is None:
        pytest.skip("no renameat2 on this system")
    renames = []
    real_replace = runtime.os.replace
    monkeypatch.setattr(runtime.os, "replace", lambda a, b: (renames.append(b), real_replace(a, b)))
    manager = CheckpointManager(tmp_path)
    manager.save(nn.Linear(2, 2), {"step": 1}, step=1)
    manager.save(nn.Linear(2, 2), {"step": 1, "again": True}, step=1)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]
    assert load_checkpoint(manager.latest(), nn.Linear(2, 2)) == {"step": 1, "again": True}
    assert not any(".old-" in str(target) for target in renames)  # exchanged, never moved aside


def test_a_live_writers_temporaries_are_left_alone_and_a_dead_ones_removed(tmp_path):
    from rxmrl.runtime import remove_stale, temporary_path

    live = temporary_path(tmp_path / "step-00000001")  # names this (running) process
    live.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = tmp_path / live.name.replace(f"-{os.getpid()}-", f"-{sleeper.pid}-")
    other.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / live.name.replace(f"-{os.getpid()}-", f"-{dead.stdout.strip()}-")
    gone.mkdir()
    try:
        assert remove_stale(tmp_path) == [gone]
        assert live.is_dir() and other.is_dir() and not gone.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale(tmp_path) == [other]  # its writer has exited now
