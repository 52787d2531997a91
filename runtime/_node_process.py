"""Run a real ``python -m runtime`` node in a subprocess, for end-to-end and multi-node tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from ._log_pump import LogPump
from ._redis_server import free_port

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = ["NodeProcess"]


class NodeProcess:
    """One node as a child process on a free loopback port.

    The node's log (stderr) is read by a thread; :meth:`wait_for_log` blocks
    until a line containing a text appears, bounded by a timeout, which is how
    tests synchronise with the node instead of sleeping.

    Args:
        env: ``SWITCHYARD_*`` settings for the node (the caller's own
            ``SWITCHYARD_*`` variables are not inherited).
        args: extra command-line flags.
        cwd: working directory (the ``--app`` module must be importable from it).
        command: what to run instead of ``python -m runtime`` (for example
            Hypercorn serving ``runtime.asgi:create_app()``); ``args`` follow it.
        ready_line: the log line that says the node is ready.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        cwd: str | None = None,
        port: int | None = None,
        command: Sequence[str] | None = None,
        ready_line: str = "node listening on",
    ) -> None:
        self.port = port or free_port()
        self._command = list(command) if command is not None else [sys.executable, "-m", "runtime"]
        self._ready_line = ready_line
        self._env = dict(env or {})
        self._args = list(args)
        self._cwd = cwd
        self._process: subprocess.Popen[str] | None = None
        self._pump: LogPump | None = None

    @property
    def url(self) -> str:
        """The node's base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of the running node; ``RuntimeError`` before it is started."""
        if self._process is None:
            raise RuntimeError("NodeProcess is not started")
        return self._process.pid

    @property
    def log(self) -> list[str]:
        """Every log line so far."""
        return [] if self._pump is None else self._pump.lines()

    def start(self, *, ready_timeout_seconds: float = 20.0, wait_ready: bool = True) -> None:
        """Start the node; by default wait until it logs that it listens."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
        environ.update(self._env)
        environ["SWITCHYARD_HOST"] = "127.0.0.1"
        environ["SWITCHYARD_PORT"] = str(self.port)
        environ["PYTHONUNBUFFERED"] = "1"
        self._process = subprocess.Popen(
            [*self._command, *self._args],
            env=environ,
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stderr is not None  # stderr=PIPE was given
        self._pump = LogPump(self._process.stderr, name=f"node-{self.port}")
        if wait_ready:
            self.wait_for_log(self._ready_line, timeout_seconds=ready_timeout_seconds)

    def wait_for_log(self, text: str, *, timeout_seconds: float = 10.0, after: int = 0) -> int:
        """Wait for a log line containing ``text`` (from line ``after`` on); return its index.

        Raises:
            TimeoutError: no such line in time, or the node exited first; the
                message carries the log's tail.
        """
        if self._pump is None:
            raise RuntimeError("NodeProcess is not started")
        index = self._pump.wait_for(text, timeout_seconds=timeout_seconds, after=after)
        if index is not None:
            return index
        state = "exited" if not self._alive() else "still running"
        tail = self._pump.tail(30)
        raise TimeoutError(f"node log has no line with {text!r} ({state}); log tail:\n{tail}")

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal to the node."""
        if self._process is not None and self._alive():
            self._process.send_signal(signum)

    def wait(self, timeout_seconds: float = 20.0) -> int:
        """Wait for the node to exit; return its exit status."""
        if self._process is None:
            raise RuntimeError("NodeProcess is not started")
        status = self._process.wait(timeout=timeout_seconds)
        if self._pump is not None:
            self._pump.join(timeout_seconds)
        return status

    def stop(self, timeout_seconds: float = 20.0) -> int:
        """SIGTERM the node and wait for it; SIGKILL it if it overruns."""
        if self._process is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self.wait(timeout_seconds)

    def __enter__(self) -> NodeProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
