"""Run an ``rxmrl`` command in a child process that SIGKILLs itself at a chosen point (the fault-injection suite).

    python tests/fault_injection.py FAULT -- rxmrl-arguments...      (or many attempts: ``Attempts``)

FAULT is ``none``, ``trace`` (log every write it could die in), ``after:SECONDS`` (a timer: a kill at an
arbitrary point), or ``KIND:PATTERN:N`` -- the
``N``-th write of that kind whose path matches the regex ``PATTERN`` dies:

    torn        half of a file's bytes are on disk (torch.save, safetensors, JSON/text, a metrics line)
    rename      the new file or folder is complete but not in place yet (renamed, or swapped with the old)
    exchange    the folders were swapped, the old one not yet deleted
    two-renames no atomic exchange on this system: the old folder is aside, the new one not yet in place
    hold        no kill: before that rename the attempt writes ``LOG.held`` and waits for ``LOG.go``
                (a run caught in the middle, for a second process to meet)

The parent checks what a user would see after re-running the same command until it finishes.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Fault:
    def __init__(self, spec: str) -> None:
        self.kind, _, rest = spec.partition(":")
        pattern, _, count = rest.rpartition(":")
        self.pattern, self.left = re.compile(pattern or "$^"), int(count or 1)

    def hit(self, kind: str, path) -> bool:
        """Whether this write is the one to die in (``path`` is matched as the final path it writes)."""
        if self.kind == "trace":  # list the writes (to design a chain of faults): one line each in the log
            print(f"fault-injection: {kind} {final_path(path)}", file=sys.stderr, flush=True)
        if kind != self.kind or not self.pattern.search(final_path(path)):
            return False
        self.left -= 1
        return self.left == 0


def final_path(path) -> str:
    """The path a temporary stands for: ``D/.staged.tmp-x/f`` -> ``D/f``, ``D/.name.tmp-x/f`` -> ``D/name/f``."""
    path = re.sub(r"/\.staged\.tmp-[^/]+", "", os.fspath(path))
    return re.sub(r"/\.([^/]+?)\.(tmp|old)-[^/]+", r"/\1", path)


def hold() -> None:
    import time
    from pathlib import Path

    Path(f"{LOG}.held").write_text("held")
    while not Path(f"{LOG}.go").exists():
        time.sleep(0.05)


LOG = "fault-injection"  # this attempt's log file (hold's signal files sit beside it; standalone: in the cwd)


def tear(path) -> None:
    """Cut a file written a moment ago to half its size, then die (a write that did not finish)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)
        file.flush()
        os.fsync(file.fileno())
    die()


def install(spec: str) -> None:
    import pathlib

    import torch

    import rxmrl.model.weights as weights
    import rxmrl.runtime as runtime
    import rxmrl.training.checkpoint as checkpoint
    from rxmrl.training.metrics import MetricsLogger

    if spec == "none":
        return
    if spec.startswith("after:"):
        timer = threading.Timer(float(spec.split(":")[1]), die)
        timer.daemon = True
        timer.start()
        return
    fault = Fault(spec)

    def torn_writer(real):
        def write(obj, path, *args, **kwargs):
            result = real(obj, path, *args, **kwargs)
            if fault.hit("torn", path):
                tear(path)
            return result
        return write

    checkpoint.torch.save = torn_writer(torch.save)
    checkpoint.save_weights = torn_writer(weights.save_weights)
    weights.save_weights = torn_writer(weights.save_weights)  # save_pretrained imports it late
    real_write_bytes = pathlib.Path.write_bytes

    def write_bytes(self, data):
        written = real_write_bytes(self, data)
        if fault.hit("torn", self):
            tear(self)
        return written
    pathlib.Path.write_bytes = write_bytes
    real_log = MetricsLogger.log

    def log(self, step, metrics):
        if self.enabled and fault.hit("torn", self.path):
            import json

            self._file.write(json.dumps({"step": step, **metrics})[:20])  # half a line
            self._file.flush()
            die()
        real_log(self, step, metrics)
    MetricsLogger.log = log
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if fault.hit("rename", target):
            die()
        if fault.hit("hold", target):
            hold()
        real_replace(source, target, *args, **kwargs)
        if ".old-" in os.fspath(target) and fault.hit("two-renames", target):
            die()
    os.replace = replace
    real_exchange = runtime._exchange

    def exchange(source, target):
        if fault.kind == "two-renames":
            return False
        if fault.hit("rename", target):
            die()
        swapped = real_exchange(source, target)
        if swapped and fault.hit("exchange", target):
            die()
        return swapped
    runtime._exchange = exchange


def run(spec: str, arguments: list[str]) -> int:
    """One attempt: the fault armed, then the command (in this process)."""
    import torch

    torch.set_num_threads(1)
    install(spec)
    from rxmrl.cli import main as rxmrl

    return rxmrl(arguments)


class Attempts:
    """Attempts forked from one process that has imported torch and rxmrl once (each fresh interpreter
    would spend seconds importing them). Nothing has run torch yet when it forks, so the children are
    clean; each one's output goes to its own log file.

        with Attempts() as attempts:
            status = attempts.run("torn:stage.json:1", ["train", "supervised", ...], log_path)  # -9: killed
    """

    def __init__(self, cwd=None) -> None:
        import subprocess

        self.process = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=cwd)
        assert self.process.stdout.readline().strip() == "ready"  # imports done: attempts time their work only

    def run(self, spec: str, arguments: list[str], log) -> int:
        """One attempt to its end: its exit status (-9: killed)."""
        return self.wait(self.start(spec, arguments, log))

    def start(self, spec: str, arguments: list[str], log) -> int:
        """Fork an attempt and return its PID at once (``wait`` for it)."""
        return self._ask({"fault": spec, "args": arguments, "log": str(log)})

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})

    def _ask(self, request: dict) -> int:
        import json

        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def __enter__(self) -> Attempts:
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def serve() -> None:
    """The forking side of :class:`Attempts`: one JSON request per line in, one exit status per line out."""
    import json

    import datasets  # noqa: F401 -- imported once, before any fork (what the commands import lazily)
    import torch._dynamo  # noqa: F401 -- the first optimizer imports it: seconds
    import transformers  # noqa: F401
    from transformers import PreTrainedTokenizerFast  # noqa: F401

    import rxmrl.cli
    import rxmrl.pipeline.run  # noqa: F401
    import rxmrl.training.mrl.run  # noqa: F401
    import rxmrl.training.supervised  # noqa: F401

    rxmrl.cli.build_parser()
    print("ready", flush=True)
    global LOG
    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _, status = os.waitpid(request["wait"], 0)
            print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            LOG = request["log"]
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = 1
            try:
                code = run(request["fault"], request["args"])
            except BaseException:  # noqa: BLE001 -- a traceback in the log, a failing status for the test
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return 0
    spec, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: fault_injection.py FAULT -- rxmrl-arguments..."
    return run(spec, arguments)


if __name__ == "__main__":
    sys.exit(main())
