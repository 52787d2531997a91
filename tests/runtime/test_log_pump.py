"""LogPump: waits for a line by number, keeps a bounded tail, and wakes waiters at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from runtime._log_pump import LogPump


class Pipe:
    """A pipe whose read end goes to the pump; the test writes to and closes the other end."""

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()
        self.reader = os.fdopen(read_end)
        self._open = True

    def write(self, text: str) -> None:
        os.write(self._write_end, text.encode())

    def close(self) -> None:
        if self._open:
            self._open = False
            os.close(self._write_end)


@pytest.fixture(name="pipe")
def _pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    pipe.close()


def test_waits_for_a_line_from_a_given_number_on(pipe: Pipe) -> None:
    pump = LogPump(pipe.reader, name="test-pump")
    pipe.write("booting\nready\nready again\n")
    assert pump.wait_for("ready", timeout_seconds=5) == 1
    assert pump.wait_for("ready", timeout_seconds=5, after=2) == 2
    assert pump.lines() == ["booting", "ready", "ready again"]
    pipe.close()
    pump.join(5)
    assert pump.finished


def test_the_end_of_the_stream_wakes_a_waiter_at_once(pipe: Pipe) -> None:
    pump = LogPump(pipe.reader, name="test-pump")
    pipe.write("starting\nfatal: no config\n")
    pipe.close()
    # A generous timeout: returning None well before it means the end woke the waiter.
    assert pump.wait_for("ready", timeout_seconds=30) is None
    assert pump.finished


def test_keeps_only_the_last_lines_but_numbers_every_line(pipe: Pipe) -> None:
    pump = LogPump(pipe.reader, name="test-pump", keep_lines=2)
    pipe.write("a\nb\nc\nd\n")
    assert pump.wait_for("d", timeout_seconds=5) == 3
    assert pump.lines() == ["c", "d"]
    assert pump.total == 4
    assert pump.tail(1) == "d"
    assert pump.wait_for("a", timeout_seconds=0) is None  # dropped, no longer searchable
