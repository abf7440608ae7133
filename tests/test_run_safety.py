"""Nothing lost, nothing mixed: runs SIGKILLed at random points and inside every kind of write, then re-run,
end exactly as an uninterrupted run; a second process on a run directory is refused; a diverged run stops at
its last finite checkpoint; a bad configuration is refused before any work starts.

The killed attempts fork from one process that imported torch and rxmrl once (``fault_injection.Attempts``),
so an attempt costs its work, not an interpreter start.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fault_injection import Attempts
from pipeline_helpers import as_set_arguments, tiny_overrides as pipeline_overrides
from test_mrl_trainer import TINY as MRL_TINY, tiny_policy
from test_supervised_cli import WARMSTART, tiny_overrides as supervised_overrides

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
KILLED = -9
WALL_CLOCK_KEYS = ("time", "steps_per_second")  # and every "time/..." key: measured, never equal twice
MEASURED = (*WALL_CLOCK_KEYS, "seconds", "attempts", "timings", "finished", "episodes_per_second")


@pytest.fixture(scope="module")
def attempts():
    with Attempts(cwd=ROOT) as forked:
        yield forked


@pytest.fixture(scope="module")
def warm_start(tmp_path_factory, tokenizer):
    """A tiny policy + tokenizer folder for ``rxmrl train mrl --init``."""
    folder = tmp_path_factory.mktemp("warm")
    tiny_policy(tokenizer.vocab_size).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


# ------------------------------------------------------------------------------------------ the commands


def supervised_command(run_dir: Path) -> list[str]:
    per_step = [f"stage{s}.loop.checkpoint_every=1" for s in (1, 2, 3, 4)]
    return ["train", "supervised", "--config", str(WARMSTART), *supervised_overrides(run_dir),
            *as_set_arguments(per_step)]


MRL_SETTINGS = [*MRL_TINY, "mrl.ppo_epochs=1", "mrl.critic.max_len=64", "mrl.max_interaction_len=64",
                "stages.0.num_episodes=4", "stages.0.eval_episodes=3", "stages.0.epochs=2",
                "stages.1.steps=3", "stages.1.num_episodes=4", "stages.1.eval_episodes=3"]


def mrl_command(run_dir: Path, warm: Path, *extra: str) -> list[str]:
    return ["train", "mrl", "--init", str(warm), "--run-dir", str(run_dir),
            *as_set_arguments([*MRL_SETTINGS, *extra])]


def pipeline_command(run_dir: Path) -> list[str]:
    sets = [*pipeline_overrides(run_dir), "latency.enabled=false", 'eval.models=["warm_start", "mrl", "oracle"]']
    return ["run", str(QUICKSTART), "--phases", "data,supervised,mrl,eval,report", *as_set_arguments(sets)]


# ------------------------------------------------------------------------------------------ what is on disk


def final_files(run_dir: Path) -> list[Path]:
    """Files under their final names (not temporaries, not moved-aside folders, not the lock)."""
    return [p for p in run_dir.rglob("*") if p.is_file() and p.name != ".rxmrl.lock"
            and not any(part.startswith(".") and re.search(r"\.(tmp|old)-", part) for part in p.parts)]


def debris(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if re.search(r"\.(tmp|old)-", p.name)]


def check_nothing_half_written(run_dir: Path) -> None:
    """After a kill: every file under its final name is whole, every checkpoint folder complete."""
    from rxmrl.training.checkpoint import CheckpointManager

    for checkpoints in run_dir.rglob("checkpoints"):
        CheckpointManager(checkpoints).latest()  # a reader puts back a folder a kill left moved aside
    for path in final_files(run_dir):
        if path.suffix == ".safetensors":
            load_file(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix == ".pt":
            torch.load(path, weights_only=False)
    for step in run_dir.rglob("step-*"):
        assert step.is_dir() and sorted(p.name for p in step.iterdir()) == ["meta.json", "model.safetensors",
                                                                          "state.pt"], step


def comparable_metrics(path: Path) -> list[dict]:
    from rxmrl.training.metrics import read_metrics

    return [{k: v for k, v in record.items() if k not in WALL_CLOCK_KEYS and not k.startswith("time/")}
            for record in read_metrics(path)]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys(), a
    for name in first:
        assert torch.equal(first[name], second[name]), (a, name)


def assert_same_run(done: Path, reference: Path) -> None:
    """Metrics (without wall-clock fields), weights and JSON results equal; no debris, no lock held."""
    from rxmrl.runtime import RunLock

    names = {p.relative_to(reference) for p in final_files(reference)}
    assert {p.relative_to(done) for p in final_files(done)} == names
    for name in sorted(names):
        if name.name == "metrics.jsonl":
            assert comparable_metrics(done / name) == comparable_metrics(reference / name), name
        elif name.suffix == ".safetensors":
            assert_same_weights(done / name, reference / name)
        elif name.name in ("stage.json", "comparison.json") or name.parts[0] == "eval":
            assert measured(done / name, done) == measured(reference / name, reference), name
    assert debris(done) == []
    with RunLock(done):  # nobody holds it
        pass


def measured(path: Path, run_dir: Path):
    """A JSON result without what is measured on the clock, with its run directory written RUN."""
    def strip(data):
        if isinstance(data, dict):
            return {k: strip(v) for k, v in data.items() if k not in MEASURED and not k.startswith("time/")}
        if isinstance(data, list):
            return [strip(v) for v in data]
        return data.replace(str(run_dir), "RUN") if isinstance(data, str) else data
    return strip(json.loads(path.read_text()))


def play(attempts: Attempts, faults: list[str], command: list[str], run_dir: Path, log: Path) -> None:
    """Each fault kills one attempt; a last, clean attempt finishes the run."""
    for fault in faults:
        status = attempts.run(fault, command, log)
        assert status == KILLED, f"{fault}: exit status {status}, expected a kill (see {log})"
        check_nothing_half_written(run_dir)
    assert attempts.run("none", command, log) == 0, log.read_text()[-3000:]


def random_kills(attempts: Attempts, command: list[str], run_dir: Path, log: Path, seconds: float,
                 seed: int) -> list[int]:
    """Kill at random moments (a share of an uninterrupted run's ``seconds``) until the run finishes."""
    rng = random.Random(seed)
    statuses = []
    for _ in range(3):
        statuses.append(attempts.run(f"after:{rng.uniform(0.25, 0.75) * seconds:.3f}", command, log))
        check_nothing_half_written(run_dir)
        if statuses[-1] == 0:
            break
    if statuses[-1] != 0:
        statuses.append(attempts.run("none", command, log))
    assert statuses[0] == KILLED and statuses[-1] == 0, (statuses, log)
    return statuses


def reference_run(attempts: Attempts, command: list[str], log: Path) -> float:
    started = time.perf_counter()
    assert attempts.run("none", command, log) == 0, log.read_text()[-3000:]
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------ the kill suites


SUPERVISED_FAULTS = [
    "torn:stage-1/run/config.toml:1",  # in order of the run's writes, each one later than the last
    "torn:stage-1/run/checkpoints/step-00000002/state.pt:1",
    "torn:stage-1/run/metrics.jsonl:2",  # half a line: cut back on resume
    "rename:stage-1/run/checkpoints/step-00000003:1",
    "torn:stage-1/model.safetensors:1",
    "rename:stage-1/tokenizer.json:1",
    "torn:stage-1/stage.json:1",  # after the last checkpoint: the resume has no step left, still a final loss
    "torn:stage-2/run/checkpoints/step-00000001/model.safetensors:1",
    "rename:stage-3/config.toml:1",
    "torn:stage-4/run/checkpoints/step-00000003/state.pt:1",
]


@pytest.mark.slow
def test_supervised_killed_inside_every_kind_of_write_and_at_random_ends_as_the_uninterrupted_run(
        attempts, tmp_path):
    reference, killed, shaken = tmp_path / "reference", tmp_path / "killed", tmp_path / "random"
    seconds = reference_run(attempts, supervised_command(reference), tmp_path / "reference.log")
    play(attempts, SUPERVISED_FAULTS, supervised_command(killed), killed, tmp_path / "killed.log")
    assert_same_run(killed, reference)
    stage1 = json.loads((killed / "stage-1" / "stage.json").read_text())
    assert stage1["attempts"] == 8 and stage1["final_loss"] is not None  # 7 killed attempts in stage 1
    random_kills(attempts, supervised_command(shaken), shaken, tmp_path / "random.log", seconds, seed=16)
    assert_same_run(shaken, reference)


MRL_FAULTS = [
    "torn:checkpoints/step-00000002/state.pt:1",
    "torn:metrics.jsonl:2",
    "torn:best-stage-0/model.safetensors:1",  # the folder before the checkpoint that records it ...
    "rename:checkpoints/step-00000003:1",  # ... which a kill then misses: the resume writes both again
    "exchange:checkpoints/step-00000003:1",  # swapped in, the old copy not yet deleted
    "two-renames:checkpoints/step-00000006:1",  # no atomic exchange: the old folder aside, the new not in
    "rename:best-stage-1:1",
    "torn:checkpoints/best/model.safetensors:1",  # before the step checkpoint a resume would start after
    "torn:final/config.json:1",
    "torn:comparison.json:1",
]


@pytest.mark.slow
def test_mrl_killed_inside_every_kind_of_write_and_at_random_ends_as_the_uninterrupted_run(
        attempts, tmp_path, warm_start):
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    reference, killed, shaken = tmp_path / "reference", tmp_path / "killed", tmp_path / "random"
    seconds = reference_run(attempts, mrl_command(reference, warm_start), tmp_path / "reference.log")
    play(attempts, MRL_FAULTS, mrl_command(killed, warm_start), killed, tmp_path / "killed.log")
    assert_same_run(killed, reference)
    random_kills(attempts, mrl_command(shaken, warm_start), shaken, tmp_path / "random.log", seconds, seed=17)
    assert_same_run(shaken, reference)
    steps = [r["step"] for r in comparable_metrics(killed / "metrics.jsonl") if "rollout/reward" in r]
    assert len(steps) == len(set(steps)) == 6  # 3 epochs of 2 batches, each recorded once
    for folder in ("best-stage-0", "best-stage-1", "final"):
        ReactiveTransformer.from_pretrained(killed / folder)
        RxTokenizer.load(killed / folder)


@pytest.mark.slow
def test_dmpo_killed_inside_writes_and_at_random_ends_as_the_uninterrupted_run(attempts, tmp_path, warm_start):
    dmpo = ("mrl.algorithm=dmpo", "mrl.group_size=2", "mrl.dmpo.min_margin=0")
    reference, killed, shaken = tmp_path / "reference", tmp_path / "killed", tmp_path / "random"
    seconds = reference_run(attempts, mrl_command(reference, warm_start, *dmpo), tmp_path / "reference.log")
    faults = ["torn:checkpoints/step-00000002/state.pt:1", "rename:best-stage-0:1",
              "torn:checkpoints/best/model.safetensors:1"]
    play(attempts, faults, mrl_command(killed, warm_start, *dmpo), killed, tmp_path / "killed.log")
    assert_same_run(killed, reference)
    random_kills(attempts, mrl_command(shaken, warm_start, *dmpo), shaken, tmp_path / "random.log", seconds, seed=19)
    assert_same_run(shaken, reference)
    assert "train/loss/dpo" in (reference / "metrics.jsonl").read_text()


PIPELINE_FAULTS = [
    "torn:phases/data.json:1",
    "torn:warmstart/stage-2/run/checkpoints/step-00000002/state.pt:1",
    "rename:phases/supervised.json:1",
    "torn:mrl/checkpoints/step-00000004/model.safetensors:1",  # grpo G = 4: four optimizer steps an iteration
    "torn:mrl/final/model.safetensors:1",
    "torn:eval/mrl.json:1",
    "rename:report.md:1",
    "torn:timings.json:1",  # after the report's marker: the next run only brings timings.json up to date
]


@pytest.mark.slow
def test_rxmrl_run_killed_inside_every_kind_of_write_and_at_random_ends_as_the_uninterrupted_run(
        attempts, tmp_path):
    reference, killed, shaken = tmp_path / "reference", tmp_path / "killed", tmp_path / "random"
    seconds = reference_run(attempts, pipeline_command(reference), tmp_path / "reference.log")
    play(attempts, PIPELINE_FAULTS, pipeline_command(killed), killed, tmp_path / "killed.log")
    assert_same_run(killed, reference)
    random_kills(attempts, pipeline_command(shaken), shaken, tmp_path / "random.log", seconds, seed=18)
    assert_same_run(shaken, reference)
    for run_dir in (killed, shaken):
        report = (run_dir / "report.md").read_text()
        tables = report[:report.index("## Wall time per phase")]
        expected = (reference / "report.md").read_text()
        assert tables.replace(str(run_dir), "RUN") == expected[:expected.index("## Wall time")].replace(
            str(reference), "RUN")
        markers = {p.stem: json.loads(p.read_text()) for p in (run_dir / "phases").glob("*.json")}
        assert sorted(markers) == ["data", "eval", "mrl", "report", "supervised"]
    assert json.loads((killed / "phases" / "supervised.json").read_text())["attempts"] == 3


# -------------------------------------------------------------------------------------- one run per dir


@pytest.mark.slow
def test_a_second_run_on_a_run_directory_is_refused_and_the_first_finishes_untouched(
        attempts, tmp_path, warm_start, capsys):
    from rxmrl.cli import main

    solo, shared = tmp_path / "solo", tmp_path / "shared"
    assert attempts.run("none", mrl_command(solo, warm_start), tmp_path / "solo.log") == 0
    log = tmp_path / "first.log"
    first = attempts.start("hold:checkpoints/step-00000002:1", mrl_command(shared, warm_start), log)
    try:
        while not Path(f"{log}.held").exists():  # the first run is in its first checkpoint
            time.sleep(0.05)
        capsys.readouterr()
        assert main(mrl_command(shared, warm_start, "seed=1")) == 2  # another seed: it must not mix in
        out = capsys.readouterr().err
        assert out.startswith(f"error: run directory {shared} is in use by process {first} on ")
        assert out.count("\n") == 1
        assert main(["train", "supervised", "--set", f"run_dir={shared / 'sub'}"]) == 2  # nor below it
        assert not (shared / "sub").exists()
    finally:
        Path(f"{log}.go").write_text("go")
        assert attempts.wait(first) == 0, log.read_text()[-3000:]
    assert_same_run(shared, solo)


# ------------------------------------------------------------------------------------------ divergence


def assert_all_finite_on_disk(run_dir: Path) -> None:
    files = [p for p in run_dir.rglob("*.safetensors")]
    assert files
    for path in files:
        assert all(torch.isfinite(t).all() for t in load_file(path).values()), path


@pytest.mark.slow
def test_a_diverging_supervised_stage_names_its_last_finite_checkpoint_and_resumes_with_a_sane_lr(
        attempts, tmp_path):
    run_dir = tmp_path / "run"
    command = [*supervised_command(run_dir), "--stages", "1", "--set", "stage1.loop.max_steps=8"]
    log = tmp_path / "diverged.log"
    # three sane steps (the attempt is killed before the fourth is saved), then a huge learning rate
    assert attempts.run("rename:checkpoints/step-00000004:1", command, log) == KILLED
    assert attempts.run("none", [*command, "--set", "stage1.optim.lr=1e30"], log) == 1
    last = log.read_text().strip().splitlines()[-1]
    assert re.fullmatch(r"error: non-finite .* Last finite checkpoint: "
                        rf"{run_dir}/stage-1/run/checkpoints/step-\d{{8}}; running the same command again resumes "
                        r"from it \(lower the learning rate first\)", last), last
    assert "Traceback" not in log.read_text()
    named = Path(re.search(r"Last finite checkpoint: (\S+);", last).group(1))
    assert named.name == "step-00000003"
    assert_all_finite_on_disk(run_dir)
    resumed = tmp_path / "resumed.log"
    assert attempts.run("none", command, resumed) == 0
    assert f"resumed from {named} at step 3" in resumed.read_text()
    assert_all_finite_on_disk(run_dir)
    stage = json.loads((run_dir / "stage-1" / "stage.json").read_text())
    assert stage["steps"] == 8 and 0 < stage["final_loss"] < 20


@pytest.mark.slow
def test_a_diverging_mrl_stage_names_its_last_finite_checkpoint_and_resumes_with_a_sane_lr(
        attempts, tmp_path, warm_start):
    run_dir = tmp_path / "run"
    log = tmp_path / "diverged.log"
    huge = ["stages.1.group_lr={memory_cross_attention = 1e30, memory_attention = 1e30, critic = 1e30}"]
    assert attempts.run("none", mrl_command(run_dir, warm_start, *huge), log) == 1
    last = log.read_text().strip().splitlines()[-1]
    assert re.fullmatch(r"error: non-finite .* Last finite checkpoint: "
                        rf"{run_dir}/checkpoints/step-\d{{8}}; running the same command again resumes from it "
                        r"\(lower the learning rate first\)", last), last
    assert "Traceback" not in log.read_text()
    assert_all_finite_on_disk(run_dir)
    named = Path(re.search(r"Last finite checkpoint: (\S+);", last).group(1))
    sane = ["stages.1.group_lr={memory_cross_attention = 1e-4, memory_attention = 1e-4, critic = 1e-4}"]
    resumed = tmp_path / "resumed.log"
    assert attempts.run("none", mrl_command(run_dir, warm_start, *sane), resumed) == 0
    text = resumed.read_text()
    assert f"resumed from {named}" in text and "differs in stages.1.group_lr.critic" in text
    assert_all_finite_on_disk(run_dir)
    assert (run_dir / "final" / "model.safetensors").is_file() and (run_dir / "comparison.json").is_file()


# ------------------------------------------------------------------------------------- refused up front


BAD_CONFIGS = [
    (["train", "mrl", "--init", "INIT", "--set", "checkpoint_every=0"],
     "error: checkpoint_every: checkpoint_every=0: expected >= 1 (iterations between checkpoints; the end of "
     "every epoch saves one too)"),
    (["train", "mrl", "--init", "INIT", "--set", "stages=[]"],
     "error: stages: stages = []: expected at least one curriculum stage, e.g. [[stages]] steps = 2"),
    (["train", "mrl", "--init", "INIT", "--set", "reward.preset=rxlmm"],
     "error: reward.preset: reward.preset='rxlmm' is not a reward preset; expected one of ['default', 'memory', "
     "'rxlm', 'rxnn-len']"),
    (["train", "mrl", "--init", "INIT", "--set", "stages.1.steps=2"],
     "error: stages.1.steps=2 does not exceed stages.0.steps=2: curriculum stages must grow "
     "(e.g. 2, 4, 8); give a stage more epochs to train one length longer"),
    (["run", str(QUICKSTART), "--set", "mrl.checkpoint_every=0"],
     "error: mrl.checkpoint_every: checkpoint_every=0: expected >= 1 (iterations between checkpoints; the end "
     "of every epoch saves one too)"),
    (["run", str(QUICKSTART), "--set", "mrl.stages.1.steps=2"],
     "error: mrl: stages.1.steps=2 does not exceed stages.0.steps=2: curriculum stages must grow (e.g. 2, 4, "
     "8); give a stage more epochs to train one length longer"),
    (["run", str(QUICKSTART), "--set", "eval.reward=nope"],
     "error: eval.reward: eval.reward='nope' is not a reward preset; expected one of ['default', 'memory', "
     "'rxlm', 'rxnn-len']"),
    (["run", str(QUICKSTART), "--set", "baseline.model.preset=giant"],
     "error: baseline.model: preset='giant' is not an RxT preset; expected one of ['micro', 'nano', "
     "'rxt-alpha-mini-decoder', 'rxt-alpha-supervised']"),
    (["train", "supervised", "--set", "model.overrides.dims=64"],
     "error: model: overrides.dims is not an RxTConfig field; did you mean 'dim'?"),
    (["train", "supervised", "--set", "model.overrides.dim=30"],
     "error: model: dim 30 must be divisible by num_heads 4"),
    (["baseline", "grpo", "--set", "grpo.reward_preset=x"],
     "error: grpo.reward_preset: grpo.reward_preset='x' is not a reward preset; expected one of ['default', "
     "'memory', 'rxlm', 'rxnn-len']"),
]


@pytest.mark.parametrize("command, message", BAD_CONFIGS)
def test_a_bad_config_is_refused_in_one_line_before_any_work(tmp_path, warm_start, capsys, monkeypatch, command,
                                                             message):
    from rxmrl.cli import main

    monkeypatch.chdir(tmp_path)  # whatever a command would write lands here
    command = [str(warm_start) if part == "INIT" else part for part in command]
    started = time.perf_counter()
    assert main(command) == 2
    assert capsys.readouterr().err == message + "\n"
    assert list(tmp_path.iterdir()) == [] and time.perf_counter() - started < 5


def test_an_init_of_another_model_size_into_a_run_directory_is_refused_in_one_line(tmp_path, warm_start,
                                                                                  tokenizer, capsys):
    from rxmrl.cli import main
    from rxmrl.model import ReactiveTransformer

    run_dir, other = tmp_path / "run", tmp_path / "warm"
    shutil.copytree(warm_start, other)
    assert main(mrl_command(run_dir, other, "stages=[{steps = 2, num_episodes = 3, eval_episodes = 3}]")) == 0
    bigger = ReactiveTransformer(tiny_policy(tokenizer.vocab_size).config.replace(dim=64))
    bigger.save_pretrained(other)  # the same --init folder, written over with another size
    capsys.readouterr()
    assert main(mrl_command(run_dir, other, "stages=[{steps = 2, num_episodes = 3, eval_episodes = 3}]")) == 2
    out = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(rf"error: {run_dir}/checkpoints/step-\d+/model.safetensors holds a model of another size "
                        r"than this run's \(\d+ tensors differ, e.g. .* is \[.*\] there and \[.*\] here\): resume "
                        r"with the model config it was written with, or use a new run_dir", out), out
    assert "size mismatch" not in out


def test_rxmrl_run_refuses_a_model_size_changed_under_finished_stages(tmp_path, capsys):
    from rxmrl.cli import main

    run_dir = tmp_path / "run"
    assert main(["run", str(QUICKSTART), "--phases", "data,supervised", "--set", "supervised.stages=[1]",
                 *as_set_arguments(pipeline_overrides(run_dir))]) == 0
    capsys.readouterr()
    resized = [*pipeline_overrides(run_dir), "supervised.model.overrides.dim=64"]
    assert main(["run", str(QUICKSTART), *as_set_arguments(resized)]) == 2
    assert capsys.readouterr().err == (f"error: supervised.model.overrides.dim changed, but {run_dir / 'warmstart'} "
                                       "already holds stage-1 of the earlier model size: set it back, or use a new "
                                       "run_dir\n")
    shutil.rmtree(run_dir)


# ------------------------------------------------------------------ resume integrity (issue 35: 3, 6, 9)


ONE_STAGE = "stages=[{steps = 2, num_episodes = 3, eval_episodes = 3}]"


@pytest.fixture
def finished_mrl(tmp_path, warm_start, capsys):
    """A finished one-stage MRL run and its recorded config.toml's bytes."""
    from rxmrl.cli import main

    run_dir = tmp_path / "run"
    assert main(mrl_command(run_dir, warm_start, ONE_STAGE)) == 0
    capsys.readouterr()
    return run_dir, (run_dir / "config.toml").read_bytes()


def refused_at_once(command: list[str], capsys) -> str:
    """Run ``command``: exit 2 within 5 s; its one error line (stderr)."""
    from rxmrl.cli import main

    started = time.perf_counter()
    assert main(command) == 2
    assert time.perf_counter() - started < 5
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_resume_from_another_warm_start_is_refused_before_any_work(finished_mrl, tmp_path, warm_start, capsys):
    """Defect 3: re-run with --init of another folder, the run continued and compared against a warm start it
    was never trained from."""
    run_dir, recorded = finished_mrl
    other = tmp_path / "stage-3"
    shutil.copytree(warm_start, other)
    line = refused_at_once(mrl_command(run_dir, other, ONE_STAGE), capsys)
    assert line.startswith(f"error: init ({str(warm_start)!r} -> {str(other)!r}) changed since "
                           f"{run_dir / 'config.toml'} was recorded, and this run resumes from its checkpoints")
    assert (run_dir / "config.toml").read_bytes() == recorded


@pytest.mark.parametrize("changed", ["optim.lr=0.001", "mrl.ppo_epochs=2"])
def test_a_setting_changed_on_a_finished_run_is_refused_and_not_recorded(finished_mrl, warm_start, capsys,
                                                                        changed):
    """Defect 6: the changed value was written into config.toml although no step ever trained with it."""
    run_dir, recorded = finished_mrl
    line = refused_at_once(mrl_command(run_dir, warm_start, ONE_STAGE, changed), capsys)
    key = changed.split("=")[0]
    assert line.startswith(f"error: {key} (") and "a resume may change nothing: it finished; set it back" in line
    assert (run_dir / "config.toml").read_bytes() == recorded


def test_a_structural_change_on_resume_is_refused_but_a_learning_rate_applies(tmp_path, warm_start, capsys):
    from rxmrl.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(warm_start, tmp_path / "warm")  # the run reads its own copy
    (run_dir / "checkpoints" / "step-00000001").mkdir(parents=True)  # as if killed after its first checkpoint
    from rxmrl.config import load_config, save_config
    from rxmrl.training.mrl.config import MrlRunConfig

    recorded = load_config(MrlRunConfig, None, [f"init={tmp_path / 'warm'}", f"run_dir={run_dir}", *MRL_SETTINGS])
    save_config(recorded, run_dir / "config.toml")
    line = refused_at_once(mrl_command(run_dir, tmp_path / "warm", "stages.1.steps=4"), capsys)
    assert line.startswith("error: stages.1.steps (3 -> 4) changed since") and "a resume may change only " \
        "checkpoint_every, grad_clip, group_lr, keep_last, lr, progress, tensorboard, torch_threads" in line
    from rxmrl.resume import unresumable_changes

    lowered = load_config(MrlRunConfig, None, [f"init={tmp_path / 'warm'}", f"run_dir={run_dir}", *MRL_SETTINGS,
                                               "optim.lr=1e-6", "stages.0.group_lr={critic = 1e-6}"])
    assert unresumable_changes(run_dir / "config.toml", lowered) == {}


def test_init_and_run_dir_of_one_folder_are_refused_before_any_write(warm_start, tmp_path, capsys):
    """Defect 9: --init X --run-dir X wrote the run's config.toml and checkpoints over its own warm start."""
    shutil.copytree(warm_start, tmp_path / "X")
    before = sorted(p.name for p in (tmp_path / "X").iterdir())
    for run_dir in (tmp_path / "X", tmp_path / "X" / "mrl"):
        line = refused_at_once(mrl_command(run_dir, tmp_path / "X", ONE_STAGE), capsys)
        assert line == (f"error: --init {tmp_path / 'X'} and --run-dir {run_dir} overlap: the run would write over "
                        "its own warm start; give a run directory outside the warm-start folder")
    assert sorted(p.name for p in (tmp_path / "X").iterdir()) == before
