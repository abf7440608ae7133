"""``rxmrl.runtime``: atomic writes, full disks named, the run-directory lock, wall time over attempts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from rxmrl.runtime import (DiskFullError, RunDirectoryInUse, RunLock, WallClock, atomic_directory, atomic_file,
                           write_json, write_text)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "notes.txt", "old")
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_file(path) as temporary:
            temporary.write_text("half of the new")
            raise RuntimeError("midway")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "final"
    with atomic_directory(folder) as temporary:
        (temporary / "a.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(folder) as temporary:
            (temporary / "a.txt").write_text("2")
            raise KeyboardInterrupt
    assert (folder / "a.txt").read_text() == "1"
    with atomic_directory(folder) as temporary:
        (temporary / "b.txt").write_text("3")
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]  # the new folder, not a merge
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_json_is_finite_for_other_readers_unless_asked(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.0, float("inf")]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [1.0, None]}
    write_json(tmp_path / "b.json", {"x": float("nan")}, nan_as_null=False)
    assert "NaN" in (tmp_path / "b.json").read_text()


FILLED_DISK = """
import resource, signal, sys, torch
from torch import nn
from rxmrl.runtime import DiskFullError
from rxmrl.training.checkpoint import CheckpointManager
manager = CheckpointManager(sys.argv[1])
manager.save(nn.Linear(2, 2), {"step": 1}, step=1)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # no file may grow past 4 KiB: writes fail as on a full disk
try:
    manager.save(nn.Linear(2, 2), {"step": 2, "moments": torch.zeros(100_000)}, step=2)
except DiskFullError as error:
    print(error)
"""


def test_a_failed_checkpoint_write_is_named_a_full_disk_and_the_checkpoints_on_disk_stay(tmp_path, monkeypatch):
    import errno

    from safetensors import SafetensorError

    import rxmrl.training.checkpoint as checkpoint
    from rxmrl.training.checkpoint import CheckpointManager, load_checkpoint

    # torch.save's own words for a write that did not reach the disk: "unexpected pos ..." (no errno)
    process = subprocess.run([sys.executable, "-c", FILLED_DISK, str(tmp_path)], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    assert re.fullmatch(rf"no space left on the disk while writing {tmp_path}/step-00000002 \(\d+ MiB free "
                        r"there\): free some space and run the same command again; the files written before are "
                        r"intact\n", process.stdout), process.stdout
    manager = CheckpointManager(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001"]
    assert load_checkpoint(manager.latest(), nn.Linear(2, 2)) == {"step": 1}
    for error in (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
                  OSError(errno.ENOSPC, "No space left on device")):  # safetensors' and Python's words for it
        monkeypatch.setattr(checkpoint, "save_weights", lambda *a, _e=error, **k: (_ for _ in ()).throw(_e))
        with pytest.raises(DiskFullError, match="no space left on the disk while writing .*step-00000003"):
            manager.save(nn.Linear(2, 2), {"step": 3}, step=3)
        assert manager.complete_steps() == [1]


def test_the_cli_prints_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from rxmrl.cli import main

    def fill_the_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("pathlib.Path.write_bytes", lambda self, data: fill_the_disk(self))
    assert main(["data", "generate", "--out", str(tmp_path / "data"), "--configs", "steps-1", "--num-train", "2",
                 "--num-validation", "2", "--num-interactions", "2", "--num-stories", "2"]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    # the first file it writes: the dataset's INCOMPLETE mark, before any episode
    assert last.startswith("error: no space left on the disk while writing ") and "INCOMPLETE" in last


LOCK_HOLDER = """
import sys, time
from rxmrl.runtime import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(directory, seconds: float = 60) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(directory), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_process_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(tmp_path):
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(RunDirectoryInUse, match=rf"run directory {tmp_path} is in use by process "
                                                    rf"{holder.pid} on .* since .*: wait for it to finish"):
            RunLock(tmp_path).acquire()
        with pytest.raises(RunDirectoryInUse, match=rf"in use by process {holder.pid} .*\(through {tmp_path}\)"):
            RunLock(tmp_path / "mrl").acquire()  # a folder below a locked one is locked too
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((tmp_path / ".rxmrl.lock").read_text())["pid"] == holder.pid  # left behind by the kill
    with RunLock(tmp_path) as lock:
        assert lock.took_over["pid"] == holder.pid
        assert json.loads((tmp_path / ".rxmrl.lock").read_text())["pid"] == os.getpid()
        with RunLock(tmp_path / "mrl"), RunLock(tmp_path):  # this process: nested and re-entrant
            pass
        assert (tmp_path / ".rxmrl.lock").is_file()
    assert not (tmp_path / ".rxmrl.lock").exists()


def test_the_cli_refuses_a_locked_run_directory_in_one_line(tmp_path, capsys):
    from rxmrl.cli import main

    holder = hold_lock(tmp_path / "run")
    try:
        code = main(["train", "supervised", "--set", f"run_dir={tmp_path / 'run'}"])
    finally:
        holder.kill()
        holder.wait()
    out = capsys.readouterr().err
    assert code == 2 and out.count("\n") == 1
    assert out.startswith(f"error: run directory {tmp_path / 'run'} is in use by process {holder.pid} on ")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".rxmrl.lock"]  # nothing was written


KILLED_WORK = """
import sys, time
from rxmrl.runtime import WallClock
clock = WallClock(sys.argv[1], interval=0.1).__enter__()
print("started", flush=True)
time.sleep(60)
"""


def test_wall_time_adds_up_over_a_killed_attempt_and_the_one_that_finishes(tmp_path):
    ledger = tmp_path / "attempts.json"
    started = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORK, str(ledger)], stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline().strip() == "started"
    time.sleep(1.0)
    worker.kill()
    worker.wait()
    killed_seconds = time.perf_counter() - started
    with WallClock(ledger, interval=0.1) as clock:
        time.sleep(0.3)
        assert len(clock.attempts) == 2
        total = clock.finish()
    assert 1.0 + 0.3 - 0.15 <= total <= killed_seconds + 0.3 + 0.2  # the killed attempt counts up to its last tick
    assert not ledger.exists()
