"""What keeps a run directory whole: atomic writes of files and folders, the run lock, torch threads.

Every file a run writes goes through :func:`atomic_file` (or :func:`write_text` / :func:`write_json`), every
folder it owns (checkpoints, model folders) through :func:`atomic_directory`, and files saved into a folder
shared with other outputs through :func:`staged_files`. A kill at any moment leaves either the old complete
version or the new complete one, never a mix:

    write    into a temporary sibling ``.NAME.tmp-HOST-PID-RANDOM`` (unique: two writers never share one)
    mode     every file gets the mode a plain ``open`` would give (0666 less the umask): libraries that
             write through private temporaries (0600) do not leave one file of a folder unreadable
    fsync    the file (each file of a folder), so the rename cannot reach the disk before the data
    rename   a file: ``os.replace``. A folder that exists: one atomic exchange of the two names
             (Linux ``renameat2(RENAME_EXCHANGE)``), then the old content is deleted. Where the exchange
             is not available, two renames, ``NAME -> .NAME.old-HOST-PID-RANDOM`` and ``tmp -> NAME``;
             a kill between them leaves the old folder under the ``.old`` name, and :func:`recover`
             (called by every reader of checkpoints and model folders) puts it back
    fsync    the parent directory, so the rename itself survives a power cut

A writer replaces a folder only when it made everything in it: :func:`check_replaceable` refuses (before
any work) a file where a folder goes, and a folder holding anything the writer does not write, unless the
caller was told to replace it.

A temporary is debris only once its writer is gone: :func:`remove_stale` deletes those whose process is
no longer running on this host and never touches a live process's (nor another host's).

One process at a time owns a run directory: :class:`RunLock` holds an exclusive ``flock`` on
``RUN_DIR/.rxmrl.lock`` (the kernel drops it when the holder dies, so a dead holder's lock is taken
over) and writes the holder's PID and host into it, which a second process names in its refusal.

:class:`WallClock` counts the wall time of a piece of work over all its attempts, killed ones included.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, ClassVar

LOCK_FILE = ".rxmrl.lock"
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}")
_DISK_FULL = re.compile(r"No space left|StorageFull|unexpected pos|file write failed|Disk quota", re.IGNORECASE)
_HOST = socket.gethostname()


class RunError(RuntimeError):
    """An error whose message says everything: the CLI prints it as one line, without a traceback."""

    exit_code = 1


class InputError(RunError):
    """Bad input (a file, a folder, an option) found before the work it would spoil: the CLI prints one
    ``error:`` line on stderr naming what is wrong and where, and exits 2. Raise it (or a subclass) wherever
    an input is checked; a command needs no ``try``/``print`` of its own."""

    exit_code = 2


class MissingInput(InputError, FileNotFoundError):
    """A file or folder the command reads is not there (still a ``FileNotFoundError`` to callers)."""


class RunDirectoryInUse(RunError):
    """Another running process holds the run directory's lock."""

    exit_code = 2


class DiskFullError(RunError):
    """A write ran out of disk space (the files already on disk are intact)."""


class ForeignContent(InputError):
    """A destination holds what this writer did not make (or is a file where a folder goes): replacing it
    would delete someone's files, so the writer refuses before any work."""


def check_output(path: str | os.PathLike, role: str, folder: bool = False) -> Path:
    """Refuse, before any work, an output that could not be written at the end: a folder where a file goes,
    a file where a folder goes, a path below a file, or a place this process may not write.

    Every command that writes somewhere it was told (``--out``, ``--plot``, ``--json``, a run directory)
    checks it here first, so an hour of work is never thrown away on a path that was wrong from the start.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{role} {path} is a file: expected a folder")
    if not folder and path.is_dir():
        raise InputError(f"{role} {path} is a folder: expected the path of a file")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor or "."))
    if existing != path and not existing.is_dir():
        raise InputError(f"{role} {path}: {existing} is a file, so nothing can be written below it")
    writable = existing if existing.is_dir() else existing.parent
    if not os.access(writable, os.W_OK | os.X_OK):
        raise InputError(f"{role} {path}: {writable} is not writable by this user")
    return path


def check_counts(args: Any, *names: str) -> None:
    """Counts given on the command line (``args.NAME``, ``None`` when left out) that must be >= 1, refused
    by their option's name before any work."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} {value}: expected a count >= 1")


# ------------------------------------------------------------------------------------------ threads


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch threads (None: unchanged), restoring the previous count afterwards."""
    import torch

    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------ atomic writes


def temporary_path(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """A unique sibling of ``path`` that names this host and process (see :func:`remove_stale`)."""
    path = Path(path)
    return path.parent / f".{path.name}.{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to (with any library); on success it
    replaces ``path`` in one rename, on an error it is removed and ``path`` stays as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    temporary = temporary_path(path)
    try:
        yield temporary
        set_plain_mode(temporary)
        fsync(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        remove_path(temporary)
        _raise_disk_full(error, path)
        raise
    fsync(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, nan_as_null: bool = True) -> Path:
    """Atomic, indented JSON. NaN/inf become null (any JSON reader takes the file) unless ``nan_as_null``
    is False (Python's ``NaN`` literals, for files only our own code reads)."""
    return write_text(path, json.dumps(_finite(data) if nan_as_null else data, indent=2) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it becomes ``path`` (replacing an existing
    folder atomically, see the module docstring); on an error it is removed and ``path`` is unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)  # also puts back a folder a killed writer had moved aside
    temporary = temporary_path(path)
    temporary.mkdir()
    try:
        yield temporary
        for file in sorted(temporary.rglob("*")):
            set_plain_mode(file)
            fsync(file)
        fsync(temporary)
        replace_directory(temporary, path)
    except BaseException as error:
        remove_path(temporary)
        _raise_disk_full(error, path)
        raise


@contextlib.contextmanager
def staged_files(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder inside ``directory``; on success each file written there replaces its
    namesake in ``directory`` atomically (for folders that hold other outputs too, e.g. ``stage-N/run``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale(directory)
    staging = temporary_path(directory / "staged")
    staging.mkdir()
    try:
        yield staging
        files = sorted(staging.iterdir())
        if any(not file.is_file() for file in files):
            raise IsADirectoryError(f"staged_files takes files only; {staging} holds folders")
        for file in files:
            set_plain_mode(file)
            fsync(file)
        for file in files:
            os.replace(file, directory / file.name)
    except BaseException as error:
        _raise_disk_full(error, directory)
        raise
    finally:
        remove_path(staging)
    fsync(directory)


def _plain_file_mode() -> int:
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _plain_file_mode()


def set_plain_mode(path: Path) -> None:
    """Give a regular file the mode ``open`` would (0666 less the umask), whatever wrote it."""
    if path.is_file() and not path.is_symlink():
        os.chmod(path, _FILE_MODE)


def check_replaceable(path: str | os.PathLike, written: Collection[str], replace_flag: str) -> None:
    """Refuse (:class:`ForeignContent`) to replace ``path`` with a folder of the files named ``written``
    when that would delete what this writer did not make: a file (or a link) at ``path``, or a folder
    holding any other entry. An absent path or an empty folder is fine. ``replace_flag`` names the
    option that replaces such a folder anyway (the caller skips this check then)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        kind = "a link" if path.is_symlink() else "a file"
        raise ForeignContent(f"{path} is {kind}, not a folder: give a folder (absent or empty) to write into")
    if not path.is_dir():
        return
    foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in written)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ForeignContent(f"{path} holds files this command did not write ({shown}): give an empty or new "
                             f"folder, or pass {replace_flag} to replace the folder and everything in it")


def replace_directory(source: Path, target: Path) -> None:
    """Put folder ``source`` at ``target``: a rename when ``target`` is absent, else an atomic exchange
    (the old content then deleted), else the two-rename fallback that :func:`recover` repairs."""
    if not target.exists():
        os.replace(source, target)
    elif _exchange(source, target):
        remove_path(source)  # now holds the old content
    else:
        retired = temporary_path(target, "old")
        os.replace(target, retired)
        os.replace(source, target)
        remove_path(retired)
    fsync(target.parent)


def recover(path: str | os.PathLike) -> bool:
    """Put back a folder that a killed writer had moved aside (the two-rename fallback); True if it did."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    for retired in sorted(path.parent.glob(f".{glob.escape(path.name)}.old-*")):
        if _owner_is_gone(retired):
            try:
                os.replace(retired, path)
            except OSError:  # another reader recovered it first
                continue
            fsync(path.parent)
            return True
    return False


def remove_stale(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries in ``directory`` whose writer is no longer running on this host (restoring
    a moved-aside folder whose namesake is missing first); returns what was removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or not _owner_is_gone(entry):
            continue
        if match["kind"] == "old" and recover(directory / match["name"]):
            continue
        remove_path(entry)
        removed.append(entry)
    return removed


def fsync(path: str | os.PathLike) -> None:
    """Flush a file, or a directory's entries, to disk (a no-op where the platform cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _owner_is_gone(entry: Path) -> bool:
    match = _TEMPORARY.fullmatch(entry.name)
    return match is not None and match["host"] == _HOST and not process_alive(int(match["pid"]))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a PID reused by another process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(source: Path, target: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    if _renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2
    if _renameat2(at_cwd, os.fsencode(source), at_cwd, os.fsencode(target), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # e.g. a filesystem without it
        return False
    raise OSError(code, os.strerror(code), str(target))


def _load_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _load_renameat2()


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree if it is there (a missing one is no error)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


# ------------------------------------------------------------------------------------- full disks


def is_disk_full(error: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or a library's wording of one (torch's zip writer says "unexpected pos",
    safetensors "StorageFull")."""
    if isinstance(error, DiskFullError) or is_file_too_large(error):
        return False
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, Exception) and bool(_DISK_FULL.search(str(error)))


def disk_full_error(path: str | os.PathLike) -> DiskFullError:
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(existing).free / 2**20
    return DiskFullError(f"no space left on the disk while writing {path} ({free:.0f} MiB free there): free "
                         "some space and run the same command again; the files written before are intact")


def is_file_too_large(error: BaseException) -> bool:
    """EFBIG: the file outgrew this process's size limit (``ulimit -f``) or the file system's, with space
    left on the disk; freeing space would not help, so it is not reported as a full disk."""
    return (isinstance(error, OSError) and error.errno == errno.EFBIG) or "File too large" in str(error)


def _raise_disk_full(error: BaseException, path: Path) -> None:
    if is_file_too_large(error):
        raise RunError(f"{path} grew past the largest file this process may write (EFBIG: see `ulimit -f` and the "
                       "file system's limit); the files written before are intact") from error
    if is_disk_full(error):
        raise disk_full_error(path) from error


@contextlib.contextmanager
def disk_space_named(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full-disk error of the writes inside into a :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except BaseException as error:
        _raise_disk_full(error, Path(path))
        raise


# ---------------------------------------------------------------------------------------- the lock


class RunLock:
    """An exclusive lock on a run directory for this process, re-entrant within it.

    ``acquire`` refuses with :class:`RunDirectoryInUse` (naming the holder's PID and host) when another
    running process holds this directory or a folder above it (``rxmrl run`` holds ``RUN_DIR`` while its
    phases lock ``RUN_DIR/mrl``...). Locks this process holds on folders above are no obstacle, so
    nested writers (the pipeline, its trainers) never deadlock.
    """

    _held: ClassVar[dict[Path, list]] = {}  # resolved directory -> [fd, count] of this process

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).resolve()
        self.path = self.directory / LOCK_FILE
        self.took_over: dict[str, Any] | None = None  # the dead holder's record, when its lock was taken over

    def acquire(self) -> RunLock:
        held = self._held.get(self.directory)
        if held is not None and held[0] is not None:
            held[1] += 1
            return self
        for folder in self.directory.parents:
            if folder not in self._held and (folder / LOCK_FILE).is_file():
                holder = _probe(folder / LOCK_FILE)
                if holder is not None:
                    raise RunDirectoryInUse(_in_use(self.directory, folder, holder))
        check_output(self.directory, "run directory", folder=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = self._lock_file()
        record = {"pid": os.getpid(), "host": _HOST, "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._held[self.directory] = [fd, 1]
        return self

    def _lock_file(self) -> int:
        import fcntl

        for attempt in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if attempt < 2:  # a reader's momentary probe of a folder above: try again
                    time.sleep(0.05)
                    continue
                raise RunDirectoryInUse(_in_use(self.directory, self.directory, _read_record(self.path)))
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last holder unlinked while we waited for it
                previous = _read_record(self.path)
                if previous and previous.get("pid") != os.getpid():
                    self.took_over = previous
                return fd
            os.close(fd)
        raise RunDirectoryInUse(f"could not lock {self.directory}: its lock file keeps changing")

    def release(self) -> None:
        held = self._held.get(self.directory)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del self._held[self.directory]
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # while still locked: a waiting process then finds a fresh file
        os.close(held[0])

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _probe(path: Path) -> dict[str, Any] | None:
    """The holder's record if another process holds ``path`` locked, else None."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_record(path) or {}
    finally:
        os.close(fd)  # closing drops the shared lock
    return None


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _in_use(directory: Path, locked: Path, holder: dict[str, Any]) -> str:
    where = "" if locked == directory else f" (through {locked})"
    who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = f" since {holder['since']}" if holder.get("since") else ""
    return (f"run directory {directory} is in use by {who}{since}{where}: wait for it to finish, stop it, "
            "or choose another run_dir")


# ---------------------------------------------------------------------------------- wall time


class WallClock:
    """Wall seconds spent on one piece of work over all its attempts, in a small JSON ledger at ``path``.

    Each attempt adds an entry that a background thread brings up to date every ``interval`` seconds, so
    a killed attempt counts up to its last update: the total is the time the work took, not only its
    last attempt. ``finish()`` returns the total and removes the ledger (the caller records the total
    with the finished work, so a later redo starts from zero).

        with WallClock(stage_dir / "attempts.json") as clock:
            ...                                   # killed here: the next attempt adds to the count
            seconds = clock.finish()
    """

    def __init__(self, path: str | os.PathLike, interval: float = 2.0) -> None:
        self.path, self.interval = Path(path), interval
        previous = _read_record(self.path).get("attempts", [])
        self.attempts: list[dict[str, float]] = [a for a in previous if isinstance(a, dict)]
        self.attempts.append({"started": time.time(), "seconds": 0.0})
        self._clock = time.perf_counter()
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._tick, name=f"wall clock {self.path.name}", daemon=True)

    def seconds(self) -> float:
        """Total wall seconds so far, over every attempt."""
        with self._guard:
            self.attempts[-1]["seconds"] = time.perf_counter() - self._clock
            return sum(float(a.get("seconds", 0.0)) for a in self.attempts)

    def finish(self) -> float:
        """Stop counting; the total seconds (the ledger is removed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        total = self.seconds()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return total

    def _save(self) -> None:
        self.seconds()
        with self._guard:
            write_json(self.path, {"attempts": self.attempts})

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, RunError):  # a full disk must not kill the work from here
                self._save()

    def __enter__(self) -> WallClock:
        self._save()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._stop.is_set():  # left early (an error, a kill signal): keep this attempt's count
            self._stop.set()
            self._thread.join()
            with contextlib.suppress(OSError, RunError):
                self._save()
