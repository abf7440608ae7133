"""Issue #35: the bad-input matrix, and defect 2.

Every command that reads a model folder, a tokenizer, a config or a data file gets corrupted inputs: a
truncated or empty ``model.safetensors``, a ``config.json`` of another shape, non-UTF-8 or broken JSON, an
unknown field, a garbage or foreign ``tokenizer.json``, a file where a folder is expected and the reverse, an
empty folder, a folder of the other kind. Each case must end in exit 2 with one ``error:`` line on stderr and
no traceback. The commands run in-process (``rxmrl.cli.main``), on tiny folders made once per session.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from rxmrl.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dim=32, num_layers=2, num_heads=2, query_heads=2, kv_heads=2, num_experts=2, experts_per_token=1,
            expert_dim=32, encoder_ff_dim=48, stm_slots=8)


def save_rxt(directory: Path, vocab_size: int, tokenizer) -> Path:
    import torch

    from rxmrl.model import ReactiveTransformer, RxTConfig

    torch.manual_seed(0)
    ReactiveTransformer(RxTConfig(vocab_size=vocab_size, **TINY)).save_pretrained(directory)
    tokenizer.save(directory)
    return directory


@pytest.fixture(scope="session")
def folders(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """The good folders every corruption starts from: an RxT model, a baseline, a supervised stage-1."""
    from rxmrl.baseline.model import build_stateless_model
    from rxmrl.model import RxTConfig

    root = tmp_path_factory.mktemp("good")
    rxt = save_rxt(root / "rxt", tokenizer.vocab_size, tokenizer)
    small_vocab = save_rxt(root / "small-vocab", tokenizer.vocab_size - 96, tokenizer)
    baseline = root / "baseline"
    model = build_stateless_model(RxTConfig(vocab_size=tokenizer.vocab_size, **TINY), seed=0)
    model.save_pretrained(baseline)
    tokenizer.save(baseline)
    stage1 = root / "stage-1"
    shutil.copytree(rxt, stage1)
    (stage1 / "stage.json").write_text(json.dumps({"stage": 1, "name": "joint LM pre-training"}))
    return {"rxt": rxt, "baseline": baseline, "small-vocab": small_vocab, "stage-1": stage1}


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def _nan_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, folder / "model.safetensors")


def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


# corruption name -> (the good folder it starts from, what it does to a copy; None: a path made from scratch)
Corruption = tuple[str, Callable[[Path], None]]
RXT_CORRUPTIONS: dict[str, Corruption] = {
    "truncated weights": ("rxt", _truncate),
    "empty weights": ("rxt", lambda f: (f / "model.safetensors").write_bytes(b"")),
    "weights missing": ("rxt", lambda f: (f / "model.safetensors").unlink()),
    "wrong shape": ("rxt", lambda f: _edit_config(f, dim=48)),
    "NaN weights": ("rxt", _nan_weights),
    "wrong vocabulary": ("rxt", lambda f: _edit_config(f, vocab_size=1000)),
    "non-UTF-8 config": ("rxt", lambda f: (f / "config.json").write_bytes(b'{"dim": "\xff\xfe"}')),
    "broken JSON config": ("rxt", lambda f: (f / "config.json").write_text('{"dim": 32,')),
    "unknown field": ("rxt", lambda f: _edit_config(f, bogus_field=1)),
    "garbage tokenizer": ("rxt", lambda f: (f / "tokenizer.json").write_text("not a tokenizer")),
    "non-UTF-8 tokenizer": ("rxt", lambda f: (f / "tokenizer.json").write_bytes(b"\xff\xfe\x00")),
    "tokenizer of another model": ("small-vocab", lambda f: None),
    "a file, not a folder": ("", lambda f: f.write_text("hello")),
    "config.json is a folder": ("rxt", lambda f: ((f / "config.json").unlink(), (f / "config.json").mkdir())),
    "empty folder": ("", lambda f: f.mkdir()),
    "a baseline folder": ("baseline", lambda f: None),
}
BASELINE_CORRUPTIONS: dict[str, Corruption] = {
    "an RxT folder": ("rxt", lambda f: None),
    "truncated weights": ("baseline", _truncate),
    "wrong shape": ("baseline", lambda f: _edit_config(f, hidden_size=48)),
    "non-UTF-8 config": ("baseline", lambda f: (f / "config.json").write_bytes(b'{"model_type": "\xff"}')),
    "another model type": ("baseline", lambda f: _edit_config(f, model_type="gpt2")),
    "garbage tokenizer": ("baseline", lambda f: (f / "tokenizer.json").write_text("{}")),
    "a file, not a folder": ("", lambda f: f.write_text("hello")),
    "empty folder": ("", lambda f: f.mkdir()),
}

# command name -> argv for a model folder P and a scratch folder T
RXT_READERS: dict[str, Callable[[str, Path], list[str]]] = {
    "eval --agent": lambda p, t: ["eval", "--agent", p, "--config", "steps-2", "--episodes", "2",
                                  "--similarity", "random-embedding"],
    "eval --compare": lambda p, t: ["eval", "--compare", "oracle", p, "--config", "steps-2", "--episodes", "2",
                                    "--similarity", "random-embedding"],
    "reward audit": lambda p, t: ["reward", "audit", "--config", "steps-2", "--episodes", "2", "--checkpoint", p,
                                  "--out", str(t / "audit")],
    "demo": lambda p, t: ["demo", "--checkpoint", p, "--scripted", "--turns", "1", "--max-new-tokens", "2"],
    "baseline latency --rxt-checkpoint": lambda p, t: ["baseline", "latency", "--rxt-checkpoint", p, "--turns", "1"],
    "train mrl --init": lambda p, t: ["train", "mrl", "--init", p, "--run-dir", str(t / "mrl")],
    "train supervised init": lambda p, t: ["train", "supervised", "--set", f"init={p}", "--run-dir", str(t / "sup")],
}
BASELINE_READERS: dict[str, Callable[[str, Path], list[str]]] = {
    "baseline latency --checkpoint": lambda p, t: ["baseline", "latency", "--checkpoint", p, "--turns", "1"],
    "baseline grpo checkpoint": lambda p, t: ["baseline", "grpo", "--config", str(REPO / "experiments" /
                                              "baseline_grpo.toml"), "--set", f"checkpoint={p}",
                                              "--set", f"output_dir={t / 'grpo'}"],
}


def corrupted(folders: dict[str, Path], corruption: Corruption, where: Path) -> str:
    start, corrupt = corruption
    path = where / "input"
    if start:
        shutil.copytree(folders[start], path)
    corrupt(path)
    return str(path)


def assert_one_error_line(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (argv, captured.err[-2000:])
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err[-2000:]
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


# what a reader rightly leaves alone: an agent may be a baseline; supervised training tokenizes with its own
# data.tokenizer, not init's; the checks before work read headers, not values, so a NaN is found when the
# weights load (the audit loads them after its scripted cases, supervised training at its first stage)
NOT_READ = {"eval --agent": {"a baseline folder"}, "eval --compare": {"a baseline folder"},
            "reward audit": {"NaN weights"},
            "train supervised init": {"garbage tokenizer", "non-UTF-8 tokenizer", "NaN weights"}}
RXT_CASES = [(command, corruption) for command in RXT_READERS for corruption in RXT_CORRUPTIONS
             if corruption not in NOT_READ.get(command, set())]


@pytest.mark.parametrize("command, corruption", RXT_CASES)
def test_every_reader_of_an_rxt_folder_refuses_a_bad_one_in_one_line(command, corruption, folders, tmp_path,
                                                                    capsys):
    path = corrupted(folders, RXT_CORRUPTIONS[corruption], tmp_path)
    line = assert_one_error_line(RXT_READERS[command](path, tmp_path), capsys)
    assert path in line or "input" in line, line  # the message names the folder or its file


@pytest.mark.parametrize("corruption", list(BASELINE_CORRUPTIONS))
@pytest.mark.parametrize("command", list(BASELINE_READERS))
def test_every_reader_of_a_baseline_refuses_a_bad_one_in_one_line(command, corruption, folders, tmp_path, capsys):
    path = corrupted(folders, BASELINE_CORRUPTIONS[corruption], tmp_path)
    line = assert_one_error_line(BASELINE_READERS[command](path, tmp_path), capsys)
    assert "input" in line, line


CONFIG_READERS: dict[str, Callable[[str, Path], list[str]]] = {
    "run": lambda c, t: ["run", c],
    "train supervised": lambda c, t: ["train", "supervised", "--config", c],
    "train mrl": lambda c, t: ["train", "mrl", "--config", c, "--init", "x"],
    "baseline train": lambda c, t: ["baseline", "train", "--config", c],
    "baseline grpo": lambda c, t: ["baseline", "grpo", "--config", c],
}
CONFIG_CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "non-UTF-8 TOML": lambda p: p.write_bytes(b'run_dir = "\xff\xfe"\n'),
    "invalid TOML": lambda p: p.write_text("run_dir = \n"),
    "a folder, not a file": lambda p: p.mkdir(),
    "missing": lambda p: None,
}


@pytest.mark.parametrize("corruption", list(CONFIG_CORRUPTIONS))
@pytest.mark.parametrize("command", list(CONFIG_READERS))
def test_every_config_reader_refuses_a_bad_file_in_one_line(command, corruption, tmp_path, capsys):
    path = tmp_path / "config.toml"
    CONFIG_CORRUPTIONS[corruption](path)
    line = assert_one_error_line(CONFIG_READERS[command](str(path), tmp_path), capsys)
    assert str(path) in line, line


DATA_READERS: dict[str, Callable[[str, Path], list[str]]] = {
    "data inspect": lambda s, t: ["data", "inspect", s, "--config", "steps-2", "--split", "validation"],
    "eval --source": lambda s, t: ["eval", "--agent", "oracle", "--source", s, "--config", "steps-2",
                                   "--similarity", "random-embedding"],
    "data inspect --tokenizer": lambda s, t: ["data", "inspect", "embedded", "--config", "steps-2", "--split",
                                              "validation", "--num-episodes", "2", "--tokenizer", s],
}
DATA_CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "non-UTF-8 file": lambda p: p.write_bytes(b"\xff\xfe\x00\x01"),
    "garbage": lambda p: p.write_text("{not json\n"),
    "empty folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("corruption", list(DATA_CORRUPTIONS))
@pytest.mark.parametrize("command", list(DATA_READERS))
def test_every_data_reader_refuses_a_bad_file_in_one_line(command, corruption, tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    DATA_CORRUPTIONS[corruption](path)
    assert_one_error_line(DATA_READERS[command](str(path), tmp_path), capsys)


def test_mrl_refuses_a_stage_1_warm_start_before_its_run_directory(folders, tmp_path, capsys):
    line = assert_one_error_line(["train", "mrl", "--init", str(folders["stage-1"]), "--run-dir",
                                  str(tmp_path / "mrl")], capsys)
    assert "is a stage-1 checkpoint (stage.json): MRL (trained memory attention) needs stage 3 or later" in line
    assert not (tmp_path / "mrl").exists()


def test_defect_2_baseline_latency_refuses_an_rxt_folder_without_building_a_llama(folders, capsys, monkeypatch):
    """An RxT config.json has no model_type: read as a Llama's it took every Llama default (6.5 billion
    parameters) and the process was killed for memory. No Llama may be built from it."""
    import transformers

    def no_llama(*_args, **_kwargs):
        raise AssertionError("a Llama was built from an RxT model folder")

    monkeypatch.setattr(transformers.LlamaForCausalLM, "from_pretrained", no_llama)
    monkeypatch.setattr(transformers.LlamaForCausalLM, "__init__", no_llama)
    line = assert_one_error_line(["baseline", "latency", "--checkpoint", str(folders["rxt"]), "--turns", "1"],
                                 capsys)
    assert line == (f"error: baseline {folders['rxt']} is an RxT model folder (config.json has no model_type): "
                    "expected a stateless baseline folder (rxmrl baseline train)")


def test_the_checked_loaders_still_load_good_folders(folders, tokenizer):
    from rxmrl.baseline.train import load_baseline
    from rxmrl.model import ReactiveTransformer

    model = ReactiveTransformer.from_pretrained(folders["rxt"])
    assert model.config.dim == TINY["dim"] and model.config.vocab_size == tokenizer.vocab_size
    llama, loaded = load_baseline(folders["baseline"])
    assert llama.config.model_type == "llama" and loaded.vocab_size == tokenizer.vocab_size
