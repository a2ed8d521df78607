"""Work of a request that could run away (checking a pasted job: a sweep or `n` of millions of runs, a YAML that
expands without end) done in a checking process with a time and memory limit, so the server answers within the bound
and a runaway is killed, instead of a server thread spinning on for minutes.

A checking process is `python -m vqclip.ui.bounded`: it reads pickled requests `(function, args, environment,
folder)` on stdin and writes pickled answers on stdout, one at a time, and is kept for the next request unless it ran
over its time (then it is killed, and the next request starts a new one)."""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..errors import VqclipError

CHECK_SECONDS = 10.0  # checking any real job takes well under a second
CHECK_MEMORY = 1 << 30  # bytes of address space a checking process may take (where the OS can cap it; ~200 MB used)
CHECKS_AT_ONCE = 4  # more checks than this wait at most CHECK_SECONDS for a free process, then are answered busy
START_SECONDS = 60.0  # a new checking process imports vqclip's config first (seconds on a busy machine)
HEADER = struct.Struct(">Q")


class Busy(VqclipError):
    """Every checking process is taken: the request may be sent again."""


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        raise EOFError
    data = stream.read(HEADER.unpack(head)[0])
    return pickle.loads(data)  # noqa: S301 - written by our own checking process, or by the server to it


class _Notes(logging.Handler):
    """The notes a check logs (`vqclip` INFO and up), sent back with its answer."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _answer(function: str, args: tuple, env: dict, cwd: str, memory: int) -> tuple[str, Any, list[str]]:
    """("ok", value, notes), ("error", its one-line error, notes) or ("limit", the limit it met, notes)."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    notes = _Notes()
    logger = logging.getLogger("vqclip")
    logger.addHandler(notes)
    try:
        module, name = function.rsplit(".", 1)
        return "ok", getattr(importlib.import_module(module), name)(*args), notes.lines
    except VqclipError as exc:
        return "error", str(exc), notes.lines
    except MemoryError:
        return "limit", f"it needs more than {memory >> 20} MB to check; make it smaller", notes.lines
    except RecursionError:
        return "limit", "it is nested too deeply to check; make it flatter", notes.lines
    except Exception as exc:  # noqa: BLE001 - a bug: its type and words, for the server's log
        return "bug", f"{type(exc).__name__}: {exc}", notes.lines
    finally:
        logger.removeHandler(notes)


def serve(memory: int) -> None:
    """The checking process: answer requests from stdin on stdout until stdin closes."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):  # Windows, or an OS that cannot cap it: time is the only bound
        pass
    logger = logging.getLogger("vqclip")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # notes go back in the answer, not to stderr
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    for module in ("vqclip.ui.jobs", "vqclip.ui.gallery"):  # what the page's checks run, before the first request
        importlib.import_module(module)
    _send(stdout, "ready")
    while True:
        try:
            request = _receive(stdin)
        except EOFError:
            return
        _send(stdout, _answer(*request, memory))


class _Process:
    """One checking process and a thread reading its answers."""

    def __init__(self, memory: int):
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # this vqclip, whatever is installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "vqclip.ui.bounded", str(memory)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.answers: queue.Queue = queue.Queue()
        self.ready = False
        threading.Thread(target=self._read, daemon=True, name="vqclip-check-reader").start()

    def _read(self) -> None:
        try:
            while True:
                self.answers.put(_receive(self.proc.stdout))
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            self.answers.put(None)

    def ask(self, request: tuple, seconds: float) -> Any:
        """The answer to `request` (once the process has started), or queue.Empty after `seconds`; None if the
        process died."""
        if not self.ready:
            if self.answers.get(timeout=START_SECONDS) != "ready":
                return None
            self.ready = True
        _send(self.proc.stdin, request)
        return self.answers.get(timeout=seconds)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Checker:
    """Runs `function(*args)` in a checking process, at most `seconds` long, a few at a time; `close` kills them.

    Args:
        seconds: how long a check may take before its process is killed and the request answered with an error.
        memory: bytes of address space a checking process may take (Linux; elsewhere only the time is bounded).
        at_once: checks at the same time; one more waits at most `wait` seconds (default: `seconds`) for a free
            process, then is answered busy.
    """

    def __init__(self, seconds: float = CHECK_SECONDS, memory: int = CHECK_MEMORY, at_once: int = CHECKS_AT_ONCE,
                 wait: float | None = None):
        self.seconds, self.memory, self.wait = seconds, memory, seconds if wait is None else wait
        self._slots = threading.BoundedSemaphore(at_once)
        self._lock = threading.Lock()
        self._idle: list[_Process] = []
        self._busy: set[_Process] = set()
        self._closed = False

    def run(self, what: str, function: Callable[..., Any], *args: Any) -> tuple[Any, list[str]]:
        """(function(*args), the notes it logged), computed in a checking process; a VqclipError naming `what` when
        it fails, takes longer than the bound or more memory than allowed. Blocking: call it from a worker thread."""
        if not self._slots.acquire(timeout=self.wait):
            raise Busy(f"{what}: the server is busy checking other jobs; send it again in a moment")
        try:
            return self._run(what, f"{function.__module__}.{function.__qualname__}", args)
        finally:
            self._slots.release()

    def _run(self, what: str, function: str, args: tuple) -> tuple[Any, list[str]]:
        with self._lock:
            if self._closed:
                raise VqclipError(f"{what}: the server is stopping")
            worker = self._idle.pop() if self._idle else _Process(self.memory)
            self._busy.add(worker)
        answer = None
        try:
            answer = worker.ask((function, args, dict(os.environ), os.getcwd()), self.seconds)
        except queue.Empty:
            raise VqclipError(f"{what}: checking it took over {self.seconds:g} s, so it was stopped (a sweep or n of "
                              "very many runs, or a YAML that expands without end?); make it smaller") from None
        except OSError:  # the process is gone: killed by `close`, or over its memory cap
            pass
        finally:
            with self._lock:
                self._busy.discard(worker)
                keep = answer is not None and not self._closed
                if keep:
                    self._idle.append(worker)
            if not keep:
                worker.kill()
        if answer is None:
            raise VqclipError(f"{what}: checking it was stopped (it needed more than {self.memory >> 20} MB, or the "
                              "server is stopping); make it smaller")
        status, value, notes = answer
        if status == "bug":
            logging.getLogger("vqclip.ui").error("checking a job failed: %s", value)
            raise VqclipError(f"{what}: could not be checked ({value})")
        if status != "ok":
            raise VqclipError(value if status == "error" else f"{what}: {value}")
        return value, notes

    @property
    def running(self) -> int:
        """Checks running now."""
        with self._lock:
            return len(self._busy)

    def close(self) -> None:
        """Kill every checking process and refuse new checks (the server is stopping)."""
        with self._lock:
            self._closed = True
            workers, self._idle = [*self._idle, *self._busy], []
        for worker in workers:
            worker.kill()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else CHECK_MEMORY)
