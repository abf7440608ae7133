"""Two gloo processes on the CPU train like one process on the same global batch -- including a stop and
resume in the middle and unfreezing a group mid-run (which rebuilds the DDP wrapper)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rxmrl.training.distributed import DistEnv, all_reduce_mean, cleanup, init_distributed
from rxmrl.training.loop import LoopConfig, RunRecord, Trainer, TrainerSettings
from rxmrl.training.metrics import read_metrics
from rxmrl.training.optim import OptimConfig
from rxmrl.training.schedule import ScheduleConfig

sys.path.insert(0, str(Path(__file__).parent))
from toy_training import GROUP_OF, ToyMoEClassifier, toy_batches, toy_task_step  # noqa: E402

GLOBAL_BATCH, STEPS = 8, 6


def unfreeze_encoder_at_step_2(trainer: Trainer) -> list[str]:
    return ["embedding", "head"] if trainer.step < 2 else ["embedding", "encoder", "head"]


def train(run_dir: Path, rank: int, world_size: int, max_steps: int = STEPS) -> Trainer:
    torch.manual_seed(0)
    model = ToyMoEClassifier(dropout=0.0)
    batches = toy_batches(GLOBAL_BATCH // world_size, rank=rank, world_size=world_size)
    loop = LoopConfig(max_steps=max_steps, log_every=1, progress=False, tensorboard=False, grad_clip=0.5)
    settings = TrainerSettings(loop, OptimConfig(lr=3e-2), ScheduleConfig(warmup_steps=2, total_steps=STEPS))
    trainer = Trainer(model, toy_task_step, batches, settings=settings, group_of=GROUP_OF,
                      trainable=["embedding", "head"], trainable_schedule=unfreeze_encoder_at_step_2,
                      env=init_distributed(device="cpu"), run=RunRecord(run_dir))
    trainer.fit()
    trainer.close()
    return trainer


def _worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed()
    assert env == DistEnv(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    assert all_reduce_mean({"x": float(rank)}, env) == {"x": 0.5}
    train(Path(run_dir), rank, world_size, max_steps=3)  # stops with a checkpoint at step 3
    trainer = train(Path(run_dir), rank, world_size)  # a fresh trainer resumes and finishes
    assert trainer.step == STEPS
    if env.is_main:
        torch.save(trainer.model.state_dict(), Path(run_dir) / "final.pt")
    cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo_ddp_with_a_resume_matches_one_uninterrupted_process(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = train(tmp_path / "single", rank=0, world_size=1)

    ddp_state = torch.load(tmp_path / "ddp" / "final.pt")
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    ddp_losses = [r["loss"] for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    single_losses = [r["loss"] for r in read_metrics(tmp_path / "single" / "metrics.jsonl")]
    assert len(ddp_losses) == STEPS
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    # Only rank 0 wrote files; the checkpoint holds both ranks' RNG streams for exact resume.
    state = torch.load(tmp_path / "ddp" / "checkpoints" / f"step-{STEPS:08d}" / "state.pt", weights_only=False)
    assert len(state["rng"]) == 2 and state["world_size"] == 2


def test_without_torchrun_variables_the_environment_is_a_single_cpu_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    env = init_distributed()
    assert (env.rank, env.world_size, env.is_main, env.distributed) == (0, 1, True, False)
    assert all_reduce_mean({"loss": 2.0}, env) == {"loss": 2.0}
