"""The shared training loop: learning, freezing, exact resume, NaN guard, schedule and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from rxmrl.training.distributed import DistEnv
from rxmrl.training.loop import LoopConfig, NonFiniteLossError, Trainer
from rxmrl.training.metrics import read_metrics
from rxmrl.training.optim import OptimConfig, build_optimizer
from rxmrl.training.schedule import ScheduleConfig, WarmupCosine
from toy_training import GROUP_OF, ToyMoEClassifier, toy_batches, toy_step, toy_task_step

OPTIM = OptimConfig(lr=3e-2, weight_decay=0.1, group_lr={"embedding": 5e-2})
SCHEDULE = ScheduleConfig(warmup_steps=3, total_steps=40, min_lr_ratio=0.1)


def make_trainer(run_dir=None, step_fn=toy_step, seed=0, batch_size=8, dropout=0.1, **loop) -> Trainer:
    torch.manual_seed(seed)
    model = ToyMoEClassifier(dropout)
    config = LoopConfig(**{"max_steps": 40, "log_every": 5, "progress": False, "tensorboard": False, **loop})
    return Trainer(model, step_fn, toy_batches(batch_size), config=config, optim=OPTIM, schedule=SCHEDULE,
                   group_of=GROUP_OF, run_dir=run_dir,
                   env=DistEnv())  # pinned to the CPU: exact-equality tests need deterministic kernels


def test_loss_falls_on_a_toy_model(tmp_path):
    result = make_trainer(tmp_path).fit()
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert {"loss", "task_loss", "aux_loss", "grad_norm", "lr/embedding", "lr/encoder"} <= set(records[0])
    assert records[-1]["lr/embedding"] == pytest.approx(5e-2 * 0.1)  # the cosine ends on the floor


def test_weight_decay_spares_norms_biases_and_embeddings():
    optimizer = build_optimizer(ToyMoEClassifier(), OPTIM, GROUP_OF)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["embedding.no_decay"]["weight_decay"] == 0.0 and "embedding" not in by_name
    assert by_name["encoder"]["weight_decay"] == 0.1
    assert all(p.ndim == 2 for p in by_name["encoder"]["params"])
    assert all(p.ndim == 1 for p in by_name["encoder.no_decay"]["params"])  # biases and the norm
    assert by_name["embedding.no_decay"]["lr"] == 5e-2 and by_name["head"]["lr"] == 3e-2


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    m = WarmupCosine(warmup_steps=4, total_steps=14, min_lr_ratio=0.2)
    assert [m(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert m(9) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert m(14) == pytest.approx(0.2) and m(100) == pytest.approx(0.2)


def test_frozen_groups_stay_bit_identical_and_unfreezing_mid_run_trains_them():
    trainer = make_trainer(max_steps=12)
    frozen_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                     if n.startswith(("embedding.", "encoder."))}
    head_before = trainer.model.head.weight.detach().clone()
    trainer.trainable_schedule = lambda t: ["head"] if t.step < 6 else ["head", "encoder"]
    trainer.config.max_steps = 6
    trainer.fit()
    for name, before in frozen_before.items():
        assert torch.equal(dict(trainer.model.named_parameters())[name], before), name
    assert not torch.equal(trainer.model.head.weight, head_before)
    trainer.config.max_steps = 12
    trainer.fit()
    assert trainer.trainable == {"head", "encoder"}
    assert not torch.equal(trainer.model.encoder["router"].weight, frozen_before["encoder.router.weight"])
    assert torch.equal(trainer.model.embedding.weight, frozen_before["embedding.weight"])


class Crash(RuntimeError):
    pass


def crash_after(calls: int):
    """A step function that dies on its ``calls + 1``-th call, like a killed process."""
    count = {"n": 0}

    def step(model, batch):
        count["n"] += 1
        if count["n"] > calls:
            raise Crash
        return toy_step(model, batch)
    return step


def test_resuming_after_a_crash_gives_the_same_next_losses_as_an_uninterrupted_run(tmp_path):
    uninterrupted = make_trainer(max_steps=20).fit().losses

    crashed = make_trainer(tmp_path, crash_after(13), max_steps=20, checkpoint_every=5)
    with pytest.raises(Crash):
        crashed.fit()
    resumed = make_trainer(tmp_path, seed=123, max_steps=20, checkpoint_every=5)  # different init: overwritten
    assert resumed.step == 10
    assert resumed.fit().losses == uninterrupted[10:]  # exact, not approximate


def test_stopping_at_max_steps_and_extending_the_run_continues_exactly(tmp_path):
    uninterrupted = make_trainer(max_steps=16, grad_accum_steps=2).fit().losses
    make_trainer(tmp_path, max_steps=7, grad_accum_steps=2).fit()
    continued = make_trainer(tmp_path, max_steps=16, grad_accum_steps=2).fit().losses
    assert continued == uninterrupted[7:]


def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path):
    def nan_at_step_7(model, batch, count={"n": 0}):
        count["n"] += 1
        loss, metrics = toy_step(model, batch)
        return (loss * float("nan") if count["n"] == 7 else loss), metrics

    trainer = make_trainer(tmp_path, nan_at_step_7, max_steps=20, checkpoint_every=3)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .*nan.* at step 7 .*no update was applied"
                                                 r".*step-00000006") as error:
        trainer.fit()
    assert "Last good checkpoint" in str(error.value)
    assert trainer.step == 6 and trainer.checkpoints.complete_steps() == [0 + 3, 6]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    reloaded = make_trainer(tmp_path, max_steps=20)
    for a, b in zip(reloaded.model.parameters(), trainer.model.parameters()):
        assert torch.equal(a, b)  # the checkpoint holds the weights at the last good step


def test_best_checkpoint_follows_the_evaluation_metric(tmp_path):
    scores = iter([3.0, 1.0, 2.0])
    trainer = make_trainer(tmp_path, max_steps=9, eval_every=3, best_metric="loss")
    trainer.eval_fn = lambda model: {"loss": next(scores)}
    trainer.fit()
    assert trainer.best_value == 1.0
    assert trainer.checkpoints.best() is not None
    meta = (trainer.checkpoints.best() / "meta.json").read_text()
    assert '"step": 6' in meta
    evals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "eval/loss" in r]
    assert [(r["step"], r["eval/loss"]) for r in evals] == [(3, 3.0), (6, 1.0), (9, 2.0)]


def test_accumulating_two_half_batches_equals_one_full_batch():
    full = make_trainer(step_fn=toy_task_step, dropout=0.0, max_steps=8)
    full.fit()
    halves = make_trainer(step_fn=toy_task_step, dropout=0.0, max_steps=8, batch_size=4, grad_accum_steps=2)
    halves.fit()
    for a, b in zip(full.model.parameters(), halves.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_explicit_micro_batches_and_a_non_finite_reward_check():
    trainer = make_trainer(step_fn=toy_task_step)
    batches = toy_batches(4)
    metrics = trainer.train_step([next(batches), next(batches)])
    assert trainer.step == 1 and set(metrics) == {"loss", "aux_loss", "grad_norm"}
    with pytest.raises(NonFiniteLossError, match=r"non-finite mean reward \(inf\) at step 2"):
        trainer.check_finite(float("inf"), "mean reward")


@pytest.mark.filterwarnings(r"ignore:Seems like `optimizer.step\(\)` has been overridden")
def test_groups_clipped_apart_keep_their_own_norm_so_a_large_one_does_not_shrink_the_rest():
    """MRL clips the critic apart: its large value-loss gradient must not scale down the policy's step."""
    def lopsided(model, batch):  # the head's gradient is ~1000x the encoder's
        loss, metrics = toy_step(model, batch)
        return loss + 1e3 * model.head.weight.square().sum(), metrics

    grads = {}
    for apart in ((), ("head",)):
        trainer = make_trainer(step_fn=lopsided, max_steps=1, grad_clip=1.0, clip_apart=apart, dropout=0.0)
        trainer.optimizer.step = lambda: None  # keep the clipped gradients for inspection
        trainer.optimizer.zero_grad = lambda set_to_none=True: None
        metrics = trainer.train_step()
        grads[apart] = {name: p.grad.norm().item() for name, p in trainer.model.named_parameters()
                        if p.grad is not None}
        grads[apart]["metrics"] = metrics
    together, apart = grads[()], grads[("head",)]
    head = [n for n in apart if n.startswith("head.")]
    rest = [n for n in apart if n != "metrics" and not n.startswith("head.")]
    norm = lambda g, names: math.sqrt(sum(g[n] ** 2 for n in names))  # noqa: E731
    assert norm(apart, head) == pytest.approx(1.0, rel=1e-4)  # the head is clipped to 1 on its own
    assert norm(apart, rest) < 1.0 and norm(apart, rest) > 100 * norm(together, rest)  # the rest is not shrunk
    assert apart["metrics"]["grad_norm/head"] > 100 and "grad_norm/head" not in together["metrics"]
    assert apart["metrics"]["grad_norm"] == pytest.approx(together["metrics"]["grad_norm"], rel=1e-4)
