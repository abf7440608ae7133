"""The shared training loop: learning, freezing, exact resume, NaN guard, schedule and metrics."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch

from rxmrl.training.distributed import DistEnv
from rxmrl.training.harness import NonFiniteLossError
from rxmrl.training.loop import Evaluation, LoopConfig, RunRecord, Trainer, TrainerSettings
from rxmrl.training.metrics import read_metrics
from rxmrl.training.optim import OptimConfig, build_optimizer
from rxmrl.training.schedule import ScheduleConfig, WarmupCosine
from toy_training import GROUP_OF, ToyMoEClassifier, toy_batches, toy_step, toy_task_step

OPTIM = OptimConfig(lr=3e-2, weight_decay=0.1, group_lr={"embedding": 5e-2})
SCHEDULE = ScheduleConfig(warmup_steps=3, total_steps=40, min_lr_ratio=0.1)


def make_trainer(run_dir=None, step_fn=toy_step, seed=0, batch_size=8, dropout=0.1, evaluation=None,
                 **loop) -> Trainer:
    torch.manual_seed(seed)
    model = ToyMoEClassifier(dropout)
    config = LoopConfig(**{"max_steps": 40, "log_every": 5, "progress": False, "tensorboard": False, **loop})
    return Trainer(model, step_fn, toy_batches(batch_size), settings=TrainerSettings(config, OPTIM, SCHEDULE),
                   group_of=GROUP_OF, evaluation=evaluation, run=RunRecord(run_dir),
                   env=DistEnv())  # pinned to the CPU: exact-equality tests need deterministic kernels


def plain_trainer(run_dir: Path, settings: TrainerSettings, run_config=None) -> Trainer:
    """A fresh toy model's ``Trainer`` with one parameter group, recording to ``run_dir``."""
    return Trainer(ToyMoEClassifier(), toy_step, toy_batches(), settings=settings, env=DistEnv(),
                   run=RunRecord(run_dir, config=run_config))


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


def nan_at_step(step: int):
    """A step function whose loss is NaN on its ``step``-th call."""
    count = {"n": 0}

    def step_fn(model, batch):
        count["n"] += 1
        loss, metrics = toy_step(model, batch)
        return (loss * float("nan") if count["n"] == step else loss), metrics
    return step_fn


def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, nan_at_step(7), max_steps=20, checkpoint_every=4)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss .*nan.* at step 7 .*no update was applied. "
                                                 r"Last finite checkpoint: .*step-00000004; running the same "
                                                 "command again resumes from it"):
        trainer.fit()
    assert trainer.step == 6 and trainer.checkpoints.complete_steps() == [4]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert make_trainer(tmp_path, max_steps=20).step == 4


def test_a_checkpoint_of_the_weights_that_gave_a_nan_is_set_aside(tmp_path):
    trainer = make_trainer(tmp_path, nan_at_step(7), max_steps=20, checkpoint_every=3)
    with pytest.raises(NonFiniteLossError, match=r"step-00000006 holds the weights that gave it, so it was moved "
                                                 r"aside to diverged-step-00000006. Last finite checkpoint: "
                                                 r".*step-00000003;"):
        trainer.fit()  # a resume from step 6 would replay the same batch on the same weights
    assert trainer.checkpoints.complete_steps() == [3]
    assert (tmp_path / "checkpoints" / "diverged-step-00000006" / "model.safetensors").is_file()


def test_best_checkpoint_follows_the_evaluation_metric(tmp_path):
    scores = iter([3.0, 1.0, 2.0])
    trainer = make_trainer(tmp_path, max_steps=9, evaluation=Evaluation(lambda model: {"loss": next(scores)}, 3))
    trainer.fit()
    assert trainer.best_value == 1.0
    assert trainer.checkpoints.best() is not None
    meta = (trainer.checkpoints.best() / "meta.json").read_text()
    assert '"step": 6' in meta
    evals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "eval/loss" in r]
    assert [(r["step"], r["eval/loss"]) for r in evals] == [(3, 3.0), (6, 1.0), (9, 2.0)]


def test_an_evaluation_needs_a_cadence_of_at_least_one_step():
    with pytest.raises(ValueError, match="Evaluation.every must be >= 1 step, got 0"):
        Evaluation(lambda model: {"loss": 0.0}, 0)


def test_accumulating_two_half_batches_equals_one_full_batch():
    full = make_trainer(step_fn=toy_task_step, dropout=0.0, max_steps=8)
    full.fit()
    halves = make_trainer(step_fn=toy_task_step, dropout=0.0, max_steps=8, batch_size=4, grad_accum_steps=2)
    halves.fit()
    for a, b in zip(full.model.parameters(), halves.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_step_over_accumulated_micro_batches_and_a_non_finite_value_check():
    trainer = make_trainer(step_fn=toy_task_step, grad_accum_steps=2)
    metrics = trainer.train_step()
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


def comparable(records):
    """Metric records without the wall-clock fields (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in ("time", "steps_per_second")} for r in records]


def test_a_resume_cuts_the_metrics_back_to_its_checkpoint_and_restores_the_logging_window(tmp_path):
    make_trainer(tmp_path / "full", max_steps=12, log_every=4, checkpoint_every=3).fit()
    crashed = make_trainer(tmp_path / "cut", crash_after(9), max_steps=12, log_every=4, checkpoint_every=3)
    with pytest.raises(Crash):
        crashed.fit()  # logged steps 4 and 8, checkpointed at 9 (its window: step 9), died in step 10
    assert [r["step"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == [4, 8]
    resumed = make_trainer(tmp_path / "cut", max_steps=12, log_every=4, checkpoint_every=3)
    assert resumed.step == 9 and resumed.window_steps == 1  # step 9 is in the open window of steps 9-12
    resumed.fit()
    full = read_metrics(tmp_path / "full" / "metrics.jsonl")
    cut = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [r["step"] for r in cut] == [4, 8, 12]  # nothing twice
    assert comparable(cut) == comparable(full)  # the record after the resume averages the same 4 steps


def test_records_a_killed_attempt_wrote_after_its_last_checkpoint_are_dropped(tmp_path):
    crashed = make_trainer(tmp_path, crash_after(9), max_steps=12, log_every=1, checkpoint_every=4)
    with pytest.raises(Crash):
        crashed.fit()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 10))
    make_trainer(tmp_path, max_steps=12, log_every=1, checkpoint_every=4).fit()  # resumes at step 8
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 13))


def test_a_resume_after_the_last_checkpoint_still_reports_the_final_loss(tmp_path):
    first = make_trainer(tmp_path, max_steps=6).fit()
    again = make_trainer(tmp_path, max_steps=6).fit()  # killed before its caller recorded the result
    assert again.losses == [] and again.final_loss == first.final_loss == first.losses[-1]
    assert again.last_metrics == first.last_metrics


def test_a_resume_applies_a_changed_learning_rate_and_says_so(tmp_path, capsys):
    from rxmrl.config import load_config

    run_config = load_config(LoopConfig)  # any dataclass tree: what config.toml records
    flat = ScheduleConfig(warmup_steps=0, min_lr_ratio=1.0)
    loop = LoopConfig(max_steps=4, progress=False, tensorboard=False)
    plain_trainer(tmp_path, TrainerSettings(loop, OptimConfig(lr=1e-2), flat), run_config).fit()
    changed = dataclasses.replace(run_config, grad_clip=0.5)
    settings = TrainerSettings(dataclasses.replace(loop, max_steps=8), OptimConfig(lr=1e-3), flat)
    resumed = plain_trainer(tmp_path, settings, changed)
    assert resumed.step == 4
    assert {g["lr"] for g in resumed.optimizer.param_groups} == {1e-3}  # not the checkpoint's 1e-2
    assert "differs in grad_clip; the new values apply from the resumed step" in capsys.readouterr().out
    resumed.fit()
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["lr/default"] == 1e-3


def test_a_resume_with_another_batch_size_is_refused(tmp_path):
    from rxmrl.config import ConfigError

    with make_trainer(tmp_path, max_steps=3) as trainer:
        trainer.fit()
    with pytest.raises(ConfigError, match="global batch of 8; this run has 64, 0 and 4"):
        make_trainer(tmp_path, max_steps=6, batch_size=4)
    assert not (tmp_path / ".rxmrl.lock").exists()  # the refused trainer let go of the run directory


def test_a_huge_learning_rate_stops_at_the_last_finite_checkpoint_and_resumes_with_a_sane_one(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    config = LoopConfig(max_steps=20, log_every=1, checkpoint_every=1, progress=False, tensorboard=False)
    huge, sane = TrainerSettings(config, OptimConfig(lr=1e30)), TrainerSettings(config, OptimConfig(lr=3e-2))
    plain_trainer(tmp_path, dataclasses.replace(sane, loop=dataclasses.replace(config, max_steps=2))).fit()
    diverging = plain_trainer(tmp_path, huge)  # resumes from the two good steps on disk
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* moved aside to diverged-step-0000000\d. Last "
                                                 r"finite checkpoint: .*step-0000000\d; running the same command "
                                                 r"again resumes from it") as error:
        diverging.fit()
    named = re.search(r"Last finite checkpoint: (\S+);", str(error.value)).group(1)
    assert Path(named) == diverging.checkpoints.latest()  # where the next run resumes
    for path in (tmp_path / "checkpoints").iterdir():  # nothing non-finite was saved, the set-aside one included
        assert all(torch.isfinite(t).all() for t in load_file(path / "model.safetensors").values()), path
    resumed = plain_trainer(tmp_path, sane)
    assert resumed.step == int(Path(named).name.split("-")[1])
    result = resumed.fit()
    assert result.step == 20 and all(math.isfinite(loss) for loss in result.losses)
