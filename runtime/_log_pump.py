"""Read a child process's text output on a daemon thread, and wait for a line in it.

Both subprocess helpers (:class:`~runtime._node_process.NodeProcess` and
:class:`~runtime._redis_server.RedisServer`) synchronise with their child by
waiting, bounded by a timeout, for a line it logs ("node listening on", "Ready
to accept connections") instead of sleeping; draining the pipe on a thread
also keeps a chatty child from blocking on a full pipe.
"""

from __future__ import annotations

import collections
import threading
from typing import IO

__all__ = ["LogPump"]


class LogPump:
    """Drain ``stream`` line by line on a daemon thread, keeping the lines for waiters.

    Lines are numbered from 0 in the order read, whether or not they are still
    kept; with ``keep_lines`` set only the most recent ones are kept (and
    searchable).

    Args:
        stream: the child's output, opened in text mode; the pump closes it at its end.
        name: the thread's name, for debugging.
        keep_lines: how many of the last lines to keep; ``None`` keeps them all.
    """

    def __init__(self, stream: IO[str], *, name: str, keep_lines: int | None = None) -> None:
        self._stream = stream
        self._lines: collections.deque[str] = collections.deque(maxlen=keep_lines)
        self._total = 0
        self._finished = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            with self._stream as stream:
                for line in stream:
                    with self._changed:
                        self._lines.append(line.rstrip("\r\n"))
                        self._total += 1
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._finished = True
                self._changed.notify_all()  # waiters stop waiting for a line that cannot come

    @property
    def finished(self) -> bool:
        """Whether the stream has ended (the child closed it, usually by exiting)."""
        with self._changed:
            return self._finished

    @property
    def total(self) -> int:
        """How many lines have been read so far (the number the next line will get)."""
        with self._changed:
            return self._total

    def lines(self) -> list[str]:
        """The kept lines, oldest first."""
        with self._changed:
            return list(self._lines)

    def tail(self, count: int) -> str:
        """The last ``count`` kept lines, joined with newlines (for error messages)."""
        with self._changed:
            return "\n".join(list(self._lines)[-count:])

    def wait_for(self, text: str, *, timeout_seconds: float, after: int = 0) -> int | None:
        """Wait for a line containing ``text``, numbered ``after`` or later; return its number.

        Returns ``None`` when no such line came within ``timeout_seconds``, or the
        stream ended without one.
        """
        found: int | None = None

        def seen() -> bool:
            nonlocal found
            found = self._find(text, after)
            return found is not None or self._finished

        with self._changed:
            self._changed.wait_for(seen, timeout=timeout_seconds)
        return found

    def _find(self, text: str, after: int) -> int | None:
        first = self._total - len(self._lines)  # the number of the oldest kept line
        for offset, line in enumerate(self._lines):
            if first + offset >= after and text in line:
                return first + offset
        return None

    def join(self, timeout_seconds: float) -> None:
        """Wait (bounded) for the thread to end, which the end of the stream brings."""
        self._thread.join(timeout_seconds)
