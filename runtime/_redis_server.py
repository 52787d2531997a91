"""A throwaway ``redis-server`` process for tests: free loopback port, under the test's control.

:class:`RedisServer` starts the real binary on ``127.0.0.1`` with a port nobody
else uses (never the machine's own Redis on 6379), with RDB saving off, the
append only file off unless asked for, and its working directory in a fresh
temporary folder. Readiness is read from the server's own log ("Ready to accept
connections"), with a bounded wait and no sleeps. A daemon thread keeps draining
the log so a chatty server never blocks on a full pipe; the last lines are kept
(bounded) for error messages.

It is synchronous on purpose: pytest fixtures (see :mod:`runtime.pytest_plugin`)
start and stop it, and tests break it on purpose: :meth:`RedisServer.kill`
(SIGKILL), :meth:`RedisServer.pause` / :meth:`RedisServer.resume`
(SIGSTOP/SIGCONT), :meth:`RedisServer.restart` on the same port with or without
its data, :meth:`RedisServer.client_kill`, :meth:`RedisServer.flushall` and
:meth:`RedisServer.starve` (``maxclients`` lowered). The control commands go over
one connection of its own, opened at the first use.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import TYPE_CHECKING, Literal

from ._log_pump import LogPump

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    import redis

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
    """A real ``redis-server`` on a free loopback port, which a test can break on purpose.

    Use it as a context manager (``with RedisServer() as server: ...``) or call
    :meth:`start` and :meth:`stop`. :meth:`restart` brings the server back on
    the same port, so clients configured with :attr:`url` reconnect to it.

    Args:
        executable: the ``redis-server`` binary (looked up on ``PATH``).
        port: the port to listen on; by default a free one is picked at the first start.
        startup_timeout_seconds: how long :meth:`start` waits for "Ready to accept connections".
        stop_timeout_seconds: how long :meth:`stop` waits after SIGTERM before SIGKILL.
        appendonly: keep an append only file, so the data survives :meth:`kill` and
            :meth:`restart` with ``empty=False``.
        appendfsync: the AOF's fsync policy; ``"always"`` (the default here) loses no
            acknowledged write to a SIGKILL, ``"everysec"`` is Redis's own default.
        control_timeout_seconds: the socket timeout of the control connection.
    """

    def __init__(
        self,
        *,
        executable: str = "redis-server",
        port: int | None = None,
        startup_timeout_seconds: float = 10.0,
        stop_timeout_seconds: float = 5.0,
        appendonly: bool = False,
        appendfsync: Literal["always", "everysec", "no"] = "always",
        control_timeout_seconds: float = 5.0,
    ) -> None:
        self._executable = executable
        self._port = port
        self._startup_timeout_seconds = startup_timeout_seconds
        self._stop_timeout_seconds = stop_timeout_seconds
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._control_timeout_seconds = control_timeout_seconds
        self._process: subprocess.Popen[str] | None = None
        self._pump: LogPump | None = None
        self._directory: str | None = None
        self._paused = False
        self._control: redis.Redis | None = None

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
        """Whether the server process is alive (a paused server is running)."""
        return self._process is not None and self._process.poll() is None

    @property
    def paused(self) -> bool:
        """Whether the server is stopped by :meth:`pause` (SIGSTOP)."""
        return self._paused and self.running

    @property
    def appendonly(self) -> bool:
        """Whether the server keeps an append only file (set by the constructor or restart)."""
        return self._appendonly

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None and self.running else None

    def start(self) -> None:
        """Start the server and wait (bounded) until it accepts connections.

        The data directory of a previous run is reused when :meth:`kill` or
        :meth:`restart` kept it; otherwise a fresh one is made.

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
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="switchyard-redis-")
        argv = [
            executable,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
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
        self._paused = False
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
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout_seconds``) and delete
        its data directory; idempotent."""
        try:
            self._end(graceful=True)
        finally:
            self._drop_directory()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and wait for it to exit.

        The data directory is kept: with ``appendonly`` a later
        ``restart(empty=False)`` (or :meth:`start`) finds every acknowledged write.

        Raises:
            RuntimeError: the server is not running.
        """
        if not self.running:
            raise RuntimeError(f"redis-server on port {self._port} is not running")
        self._end(graceful=False)

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open, commands get no answer (a stalled Redis).

        Control commands (:meth:`flushall`, ...) would hang until :meth:`resume`.

        Raises:
            RuntimeError: the server is not running.
        """
        process = self._running_process()
        process.send_signal(signal.SIGSTOP)
        self._paused = True
        logger.info("redis-server pid %s paused (SIGSTOP)", process.pid)

    def resume(self) -> None:
        """SIGCONT a server stopped by :meth:`pause`; harmless on a running one.

        Raises:
            RuntimeError: the server is not running.
        """
        process = self._running_process()
        process.send_signal(signal.SIGCONT)
        self._paused = False
        logger.info("redis-server pid %s resumed (SIGCONT)", process.pid)

    def restart(self, *, empty: bool = True, appendonly: bool | None = None) -> None:
        """Stop the server if it runs (SIGTERM), then start it again on the same port.

        Args:
            empty: delete the data directory first, so the server starts with no data.
                With ``empty=False`` the data survives only if the append only file
                was on (RDB saving is always off): without AOF the server is empty
                either way.
            appendonly: switch the append only file on or off from this start on
                (``None`` keeps the current choice). Switching it on with
                ``empty=False`` starts from the old (absent) AOF, so with no data.
        """
        self._end(graceful=True)
        if empty:
            self._drop_directory()
        if appendonly is not None:
            self._appendonly = appendonly
        self.start()

    # -- control commands --------------------------------------------------------------

    def client_kill(self, type_: Literal["normal", "pubsub", "replica", "master"]) -> int:
        """``CLIENT KILL TYPE type_ SKIPME yes``: close every client connection of that type.

        Returns how many were closed (the control connection itself is spared).
        """
        killed = self._control_client().client_kill_filter(_type=type_, skipme=True)
        logger.info("redis-server port %s: killed %s %s clients", self._port, killed, type_)
        return int(killed)

    def flushall(self) -> None:
        """``FLUSHALL``: delete every key of every database."""
        self._control_client().flushall()

    def connected_clients(self) -> int:
        """``connected_clients`` from ``INFO clients`` (the control connection included)."""
        info = self._control_client().info("clients")
        return int(info["connected_clients"])

    def set_maxclients(self, count: int) -> int:
        """``CONFIG SET maxclients count``; returns the previous value.

        Connections already open stay; a new one past the limit is refused by
        Redis with "max number of clients reached" (a ``redis.ConnectionError``).
        """
        if count < 1:
            raise ValueError(f"maxclients must be at least 1, got {count}")
        control = self._control_client()
        previous = int(str(control.config_get("maxclients")["maxclients"]))
        control.config_set("maxclients", count)
        return previous

    @contextlib.contextmanager
    def starve(self, *, spare: int = 0) -> Iterator[int]:
        """Within the block, Redis takes only ``spare`` connections more than it has now.

        ``maxclients`` is lowered to the connections open at entry (the control
        connection among them) plus ``spare``, and restored on exit. Yields the
        limit in force.
        """
        limit = self.connected_clients() + spare
        previous = self.set_maxclients(limit)
        try:
            yield limit
        finally:
            self._control_client().config_set("maxclients", previous)

    # -- internals ---------------------------------------------------------------------

    def _running_process(self) -> subprocess.Popen[str]:
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self._port} is not running")
        return process

    def _control_client(self) -> redis.Redis:
        """One connection of our own for control commands, made at the first use."""
        import redis as redis_  # here: the pytest plugin imports this module for every run

        self._running_process()
        if self._control is None:
            self._control = redis_.Redis(
                host="127.0.0.1",
                port=self.port,
                socket_timeout=self._control_timeout_seconds,
                socket_connect_timeout=self._control_timeout_seconds,
                single_connection_client=True,
            )
        return self._control

    def _end(self, *, graceful: bool) -> None:
        """End the process (if any) and the log pump; the data directory stays."""
        control, self._control = self._control, None
        if control is not None:
            control.close()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if not graceful:
                process.kill()
                process.wait()
                logger.info("redis-server pid %s killed (SIGKILL)", process.pid)
            else:
                if self._paused:
                    process.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
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
        self._paused = False
        if self._pump is not None:
            # The pump ends (and closes the pipe) at end of output, which the exit brings.
            self._pump.join(self._stop_timeout_seconds)
            self._pump = None

    def _drop_directory(self) -> None:
        directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory)

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
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"RedisServer(port={self._port}, {state})"
