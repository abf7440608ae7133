"""``rxmrl train supervised`` on a tiny config: a subset of stages, one loadable checkpoint per stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from rxmrl.cli import main
from rxmrl.config import load_config
from rxmrl.model import ReactiveTransformer
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.supervised import SupervisedConfig

sys.path.insert(0, str(Path(__file__).parent))
from supervised_helpers import TINY  # noqa: E402

WARMSTART = Path(__file__).parents[1] / "experiments" / "warmstart.toml"


def tiny_overrides(run_dir: Path) -> list[str]:
    args = [f"run_dir={run_dir}", "data.num_validation_episodes=4", "data.curriculum_steps=2"]
    args += [f"model.overrides.{key}={value}" for key, value in TINY.items()]
    for stage in (1, 2, 3, 4):
        args += [f"stage{stage}.loop.max_steps=3", f"stage{stage}.loop.progress=false",
                 f"stage{stage}.loop.tensorboard=false", f"stage{stage}.loop.log_every=1",
                 f"stage{stage}.schedule.warmup_steps=1", f"stage{stage}.batch_size=2"]
    args += ["stage1.num_examples=8", "stage2.num_examples=8", "stage3.num_episodes=4", "stage4.num_episodes=4"]
    return [flag for arg in args for flag in ("--set", arg)]


def test_cli_runs_a_subset_of_stages_and_writes_loadable_checkpoints(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", "supervised", "--config", str(WARMSTART), "--stages", "1,3", *tiny_overrides(run_dir)])
    assert code == 0
    assert not (run_dir / "stage-2").exists() and not (run_dir / "stage-4").exists()
    stage1, stage3 = (ReactiveTransformer.from_pretrained(run_dir / f"stage-{n}") for n in (1, 3))
    tokenizer = RxTokenizer.load(run_dir / "stage-3")
    assert stage3.config.vocab_size == tokenizer.vocab_size and stage3.config.dim == TINY["dim"]
    # Stage 3 starts from stage 1 and trains only memory attention.
    for name, value in stage1.state_dict().items():
        assert torch.equal(value, stage3.state_dict()[name]) == (not name.startswith("memory_attention.")), name
    saved = load_config(SupervisedConfig, run_dir / "stage-3" / "config.toml")
    assert saved.run_dir == run_dir and saved.stage3.loop.max_steps == 3
    assert json.loads((run_dir / "stage-3" / "stage.json").read_text())["steps"] == 3
    assert (run_dir / "stage-3" / "run" / "metrics.jsonl").is_file()

    # Re-running skips the finished stages; stage 4 starts from stage 3 and ends with the memory probe.
    assert main(["train", "supervised", "--config", str(WARMSTART), "--stages", "3,4", *tiny_overrides(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "stage 3 (memory attention pre-training): 3 steps" in out and "(already done)" in out
    assert "starts from stage-3" in out and "memory matters on validation follow-ups" in out
    memory = json.loads((run_dir / "stage-4" / "stage.json").read_text())["memory"]
    assert memory["tokens"] > 0 and memory["loss_with_memory"] > 0


def test_cli_rejects_unknown_stages_and_config_keys(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "supervised", "--stages", "1,5"])
    assert "expected numbers from 1 to 4" in capsys.readouterr().err
    assert main(["train", "supervised", "--set", "stage4.unfreeze_encoder_at=-1",
                 "--set", "stage4.unfreeze_memory_attention_at=2"]) == 2
    assert main(["train", "supervised", "--set", "stage9.loop.max_steps=1"]) == 2
    assert "stage9" in capsys.readouterr().err


def test_warmstart_preset_loads_and_finishes_in_the_published_order():
    config = load_config(SupervisedConfig, WARMSTART)
    assert config.stages == [1, 2, 3, 4] and config.model.preset == "nano"
    assert config.stage4.unfreeze_memory_attention_at <= config.stage4.unfreeze_encoder_at


def test_one_generated_folder_feeds_all_four_stages(tmp_path, monkeypatch):
    from rxmrl.data import load_interactions, load_stories

    data = tmp_path / "data"
    assert main(["data", "generate", "--out", str(data), "--configs", "steps-6", "--num-train", "4",
                 "--num-validation", "4", "--num-supervised", "8", "--num-interactions", "20",
                 "--num-stories", "20"]) == 0
    read = []
    for module, name in ((load_stories, "load_stories"), (load_interactions, "load_interactions")):
        monkeypatch.setattr(f"rxmrl.data.{name}", lambda source, *a, _f=module, **k: read.append(source) or _f(
            source, *a, **k))
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(run_dir), "--set", f"data.source={data}", "--set", "data.curriculum_steps=6"]
    assert main(["train", "supervised", "--config", str(WARMSTART), *overrides]) == 0
    assert read == [str(data), str(data)]  # stages 1 and 2 read the folder's stories/ and sft/
    assert load_stories(data, num_stories=3) == load_stories(data / "stories", num_stories=3)
    assert load_interactions(data, num_interactions=3) == load_interactions(data / "sft", num_interactions=3)
    for stage in (1, 2, 3, 4):
        assert json.loads((run_dir / f"stage-{stage}" / "stage.json").read_text())["steps"] == 3


def test_a_stage_resumed_with_another_batch_size_is_refused_before_any_work(tmp_path, capsys):
    """Issue 35: a resume keeps its structure (rxmrl.resume); a stage with checkpoints is a resume."""
    from rxmrl.config import save_config

    run_dir = tmp_path / "run"
    sets = tiny_overrides(run_dir)
    recorded = load_config(SupervisedConfig, WARMSTART, sets[1::2])
    (run_dir / "stage-1" / "run" / "checkpoints" / "step-00000001").mkdir(parents=True)  # killed after step 1
    save_config(recorded, run_dir / "stage-1" / "run" / "config.toml")
    command = ["train", "supervised", "--config", str(WARMSTART), "--stages", "1", *sets]
    capsys.readouterr()
    assert main([*command, "--set", "stage1.batch_size=3"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: stage1.batch_size (2 -> 3) changed since") and out.count("\n") == 1
    assert sorted(p.name for p in (run_dir / "stage-1" / "run").iterdir()) == ["checkpoints", "config.toml"]


def test_threads_sets_torchs_thread_count_for_the_run_and_restores_it(tmp_path, monkeypatch):
    import rxmrl.training.supervised as supervised

    seen = []
    real = supervised.run_supervised
    monkeypatch.setattr(supervised, "run_supervised",
                        lambda config, stages: (seen.append(torch.get_num_threads()), real(config, stages))[1])
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    assert main(["train", "supervised", "--config", str(WARMSTART), "--stages", "1", "--threads", str(wanted),
                 *tiny_overrides(tmp_path / "run")]) == 0
    assert seen == [wanted] and torch.get_num_threads() == before
