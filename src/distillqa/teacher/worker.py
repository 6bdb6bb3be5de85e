"""A teacher backend in a child process, so a native crash becomes one clear error.

llama.cpp (and any other native library) can die of SIGSEGV/SIGABRT/SIGILL, which no Python
`except` catches: in-process it would take the whole `distillqa` command (or the test run) down
without a word. Here the backend lives in a worker process (`python -m distillqa.teacher.worker`,
a fresh interpreter: forking a process that holds torch or OpenMP threads can deadlock, and
unlike multiprocessing's `spawn` this never re-runs the caller's main script); the parent sends
it batches of requests over a socket pair and notices when the worker is gone. Only plain
dataclasses cross it, so the overhead is negligible (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection

from distillqa.errors import DistillqaError
from distillqa.teacher.base import GenerationRequest, GenerationResult, Teacher, error_line

POLL_S = 0.2  # how often a waiting parent checks that the worker is still alive
CLOSE_WAIT_S = 5.0  # how long close() lets the worker finish before terminating it


class TeacherCrashed(DistillqaError):
    """The worker process died (a native crash, the OOM killer): names the backend and the signal."""

    def __init__(self, backend: str, exitcode: int | None):
        self.backend = backend
        self.signal = signal_name(exitcode)
        super().__init__(f"the {backend} teacher backend crashed ({self.signal}) in its worker process")


def signal_name(exitcode: int | None) -> str:
    """'SIGSEGV' for a process killed by signal 11; 'exit code 3' for a plain exit."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _serve(conn: Connection) -> None:
    """The worker's loop: build the backend once, then answer ("generate", requests) messages.

    The first message is the parent's sys.path and the pickled factory, unpickled only after
    sys.path is set so a factory from any module the parent can import loads here too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    path, payload = conn.recv()
    sys.path[:] = path
    try:
        teacher = pickle.loads(payload)()
    except DistillqaError as e:
        conn.send(("error", str(e)))
        return
    except Exception as e:  # noqa: BLE001 - any load failure is reported to the parent as one line
        conn.send(("error", f"{type(e).__name__}: {error_line(e)}"))
        return
    conn.send(("ready", teacher.name, bool(getattr(teacher, "supports_json_schema", False))))
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone
                break
            if message[0] == "close":
                break
            try:
                conn.send(("results", teacher.generate(message[1])))
            except Exception as e:  # noqa: BLE001
                conn.send(("error", f"{type(e).__name__}: {error_line(e)}"))
    finally:
        teacher.close()


class IsolatedTeacher:
    """The `Teacher` interface, served by a backend built by `factory` in a worker process.

    `factory` must be picklable: a module-level function or a `functools.partial` of one.
    """

    def __init__(self, factory: Callable[[], Teacher], backend: str):
        self.backend = backend
        self._conn, child = multiprocessing.Pipe()  # a socket pair on POSIX
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "distillqa.teacher.worker", str(child.fileno())], pass_fds=(child.fileno(),)
        )
        child.close()
        self._conn.send((list(sys.path), pickle.dumps(factory)))
        reply = self._receive()
        self.name: str = reply[1]
        self.supports_json_schema: bool = reply[2]

    def _receive(self) -> tuple:
        """The worker's next reply; raises TeacherCrashed when it died, DistillqaError when it failed."""
        while not self._conn.poll(POLL_S):
            if self._proc.poll() is not None:
                break
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            raise TeacherCrashed(self.backend, self._exitcode()) from None
        if reply[0] == "error":
            self.close()
            raise DistillqaError(reply[1])
        return reply

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        try:
            self._conn.send(("generate", requests))
        except OSError:  # BrokenPipeError included: the worker is gone
            raise TeacherCrashed(self.backend, self._exitcode()) from None
        return self._receive()[1]

    def _exitcode(self) -> int | None:
        try:
            return self._proc.wait(CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Ask the worker to finish; terminate it if it does not within CLOSE_WAIT_S."""
        if self._proc.poll() is None:
            try:
                self._conn.send(("close",))
            except OSError:
                pass
            try:
                self._proc.wait(CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                self._proc.wait()
        self._conn.close()


if __name__ == "__main__":  # the worker process: python -m distillqa.teacher.worker FD
    _serve(Connection(int(sys.argv[1])))
