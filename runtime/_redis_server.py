"""A throwaway ``redis-server`` process for tests: free loopback port, no persistence.

:class:`RedisServer` starts the real binary on ``127.0.0.1`` with a port nobody
else uses (never the machine's own Redis on 6379), with saving and the append
only file switched off and its working directory in a fresh temporary folder.
Readiness is read from the server's own log ("Ready to accept connections"),
with a bounded wait and no sleeps. A daemon thread keeps draining the log so a
chatty server never blocks on a full pipe; the last lines are kept (bounded)
for error messages.

It is synchronous on purpose: pytest fixtures (see :mod:`runtime.pytest_plugin`)
start and stop it, and tests call :meth:`RedisServer.stop` and
:meth:`RedisServer.restart` to simulate an outage.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
from typing import TYPE_CHECKING

from ._log_pump import LogPump

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RedisServer", "free_port"]

logger = logging.getLogger("runtime.redis_server")

_READY_LINE = "Ready to accept connections"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bind port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A real ``redis-server`` on a free loopback port, without persistence.

    Use it as a context manager (``with RedisServer() as server: ...``) or call
    :meth:`start` and :meth:`stop`. :meth:`restart` brings the server back on
    the same port, so clients configured with :attr:`url` reconnect to it.

    Args:
        executable: the ``redis-server`` binary (looked up on ``PATH``).
        port: the port to listen on; by default a free one is picked at the first start.
        startup_timeout_seconds: how long :meth:`start` waits for "Ready to accept connections".
        stop_timeout_seconds: how long :meth:`stop` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        *,
        executable: str = "redis-server",
        port: int | None = None,
        startup_timeout_seconds: float = 10.0,
        stop_timeout_seconds: float = 5.0,
    ) -> None:
        self._executable = executable
        self._port = port
        self._startup_timeout_seconds = startup_timeout_seconds
        self._stop_timeout_seconds = stop_timeout_seconds
        self._process: subprocess.Popen[str] | None = None
        self._pump: LogPump | None = None
        self._directory: str | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (fixed at the first :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("RedisServer has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections.

        Raises:
            RuntimeError: the server is already running, exited early, or was not
                ready within ``startup_timeout_seconds``; the message holds its last
                log lines.
            FileNotFoundError: the executable is not installed.
        """
        if self.running:
            raise RuntimeError(f"redis-server on port {self._port} is already running")
        if self._port is None:
            self._port = free_port()
        executable = shutil.which(self._executable)
        if executable is None:
            raise FileNotFoundError(
                f"{self._executable!r} is not on PATH; install redis-server to run tests "
                "marked 'redis'"
            )
        self._directory = tempfile.mkdtemp(prefix="switchyard-redis-")
        argv = [
            executable,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._directory,
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._process = process
        if process.stdout is None:  # never: stdout=PIPE was given
            self.stop()
            raise RuntimeError("redis-server started without an output pipe")
        self._pump = LogPump(process.stdout, name="redis-server-log", keep_lines=50)
        ready = self._pump.wait_for(_READY_LINE, timeout_seconds=self._startup_timeout_seconds)
        if ready is None:
            tail = self._pump.tail(50)
            exited = self._pump.finished
            self.stop()
            why = "exited" if exited else f"was not ready after {self._startup_timeout_seconds:g}s"
            raise RuntimeError(
                f"redis-server on 127.0.0.1:{self._port} {why}; its last output:\n{tail}"
            )
        logger.debug("redis-server pid %s ready on port %s", process.pid, self._port)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout_seconds``); idempotent."""
        process, self._process = self._process, None
        try:
            if process is not None:
                if process.poll() is None:
                    process.terminate()
                try:
                    process.wait(self._stop_timeout_seconds)
                except subprocess.TimeoutExpired:
                    logger.warning(
                        "redis-server pid %s ignored SIGTERM for %ss; killing it",
                        process.pid,
                        self._stop_timeout_seconds,
                    )
                    process.kill()
                    process.wait()
            if self._pump is not None:
                # The pump ends (and closes the pipe) at end of output, which the exit brings.
                self._pump.join(self._stop_timeout_seconds)
                self._pump = None
        finally:
            directory, self._directory = self._directory, None
            if directory is not None:
                shutil.rmtree(directory)

    def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port (with no data)."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(port={self._port}, {state})"
