"""Issue #35: one error path for the CLI (defects 7, 8, 9, 10, 11, 14, 16), each case in-process.

An expected error is one ``error:`` line on stderr and exit 2, found before the work it would spoil.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

from rxmrl.cli import main

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml"


def one_error_line(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, captured.err[-1500:])
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


@pytest.mark.parametrize("argv, named", [
    (["reward", "audit", "--config", "steps-2", "--episodes", "2", "--out", "FILE"], "--out FILE is a file"),
    (["reward", "audit", "--config", "steps-2", "--episodes", "2", "--max-new-tokens", "0"],
     "--max-new-tokens 0: expected a count >= 1"),
    (["baseline", "latency", "--turns", "1", "--plot", "FOLDER"], "--plot FOLDER is a folder"),
    (["baseline", "latency", "--turns", "0"], "--turns 0: expected a count >= 1"),
    (["eval", "--agent", "oracle", "--episodes", "0"], "--episodes 0: expected a count >= 1"),
    (["data", "generate", "--out", "OUT", "--num-train", "-5"], "--num-train -5: expected a count >= 1"),
    (["train", "supervised", "--run-dir", "FILE/run"], "FILE is a file, so nothing can be written below it"),
    (["train", "supervised", "--threads", "0"], "--threads 0: expected a count >= 1"),
    (["train", "mrl", "--init", "FOLDER", "--threads", "0"], "--threads 0: expected a count >= 1"),
    (["run", "FOLDER"], "is a folder: expected a TOML file"),
])
def test_outputs_and_counts_are_refused_before_the_work(argv, named, tmp_path, capsys):
    (tmp_path / "FILE").write_text("precious")
    (tmp_path / "FOLDER").mkdir()
    argv = [str(tmp_path / a) if a in ("FILE", "FOLDER", "OUT", "FILE/run") else a for a in argv]
    line = one_error_line(argv, capsys)
    assert named.replace("FILE", str(tmp_path / "FILE")).replace("FOLDER", str(tmp_path / "FOLDER")) in line, line
    assert (tmp_path / "FILE").read_text() == "precious" and not (tmp_path / "OUT").exists()


@pytest.mark.parametrize("phases, missing", [("eval", "supervised"), ("mrl", "supervised"),
                                             ("data,supervised,eval", "mrl")])
def test_phases_that_read_an_unfinished_phase_are_refused_by_name(phases, missing, tmp_path, capsys):
    run_dir = tmp_path / "run"
    line = one_error_line(["run", str(QUICKSTART), "--set", f"run_dir={run_dir}", "--phases", phases], capsys)
    assert f"reads what phase {missing} makes, and {missing} has not finished in {run_dir}" in line, line
    assert "--init" not in line and not run_dir.exists()


def test_run_help_names_every_phase(capsys):
    from rxmrl.pipeline.phases import PHASES
    from rxmrl.pipeline.run import PHASE_TITLES

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"Runs the phases {', '.join(PHASES)} in order" in text
    assert set(PHASE_TITLES) == set(PHASES) and len(PHASES) == 10


def test_a_curriculum_error_is_one_line_not_a_traceback(tmp_path, capsys):
    folder = tmp_path / "curriculum" / "steps-2"
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text('{"query": "", "answer": "a", "interactions": []}\n')
    line = one_error_line(["eval", "--agent", "oracle", "--source", str(tmp_path / "curriculum"), "--config",
                           "steps-2", "--similarity", "random-embedding"], capsys)
    assert "validation" in line


def test_the_demo_answers_piped_queries_and_notes_an_over_long_one(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("who is Tom?\n\n" + "word " * 400 + "\nwhere is the cat?\n"))
    assert main(["demo", "--max-new-tokens", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("you> ") == 3 and captured.out.count("rxt> ") == 2
    assert "you> who is Tom?" in captured.out and "you> where is the cat?" in captured.out
    assert "saved interaction" not in captured.out  # no scripted replay in place of the user's input
    assert "over the model's limit of 256: not answered" in captured.err


def test_ctrl_c_ends_the_demo_without_a_traceback(monkeypatch, capsys):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rxmrl.demo.converse", interrupted)
    assert main(["demo", "--scripted", "--turns", "1"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_too_large_is_not_called_a_full_disk(tmp_path):
    from rxmrl.runtime import DiskFullError, RunError, disk_space_named

    with pytest.raises(RunError, match="EFBIG") as caught, disk_space_named(tmp_path / "model.safetensors"):
        raise OSError(errno.EFBIG, "File too large")
    assert not isinstance(caught.value, DiskFullError)
    with pytest.raises(DiskFullError), disk_space_named(tmp_path / "model.safetensors"):
        raise OSError(errno.ENOSPC, "No space left on device")
