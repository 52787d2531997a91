"""Pytest fixtures for Switchyard users (loaded automatically through the ``pytest11`` entry point).

Redis fixtures start a real ``redis-server`` (see :class:`runtime.RedisServer`)
on a free loopback port, never the machine's own Redis. Mark the tests that
use them with ``@pytest.mark.redis``.

- ``redis_server``: a fresh server for one test, stopped afterwards (even when
  paused). The test may break it on purpose: ``kill()``, ``pause()`` and
  ``resume()``, ``restart(empty=..., appendonly=...)``, ``client_kill(type_)``,
  ``flushall()``, ``starve()`` (the port stays the same, so clients reconnect
  by themselves); put a :class:`runtime.testing.FaultProxy` in front of it for
  network faults.
- ``redis_server_session``: one server for the whole session, for speed.
  Tests must not stop it (use ``redis_server`` for that).
- ``redis_url``: the session server's URL (``redis://127.0.0.1:PORT/0``) with
  database 0 flushed before the test, so tests do not see each other's keys.

The plugin registers the markers ``redis`` (the test starts a real
``redis-server``), ``e2e`` (real Hypercorn over TCP or a real node
subprocess) and ``outage`` (long Redis outage scenarios, still run in CI),
so projects that run pytest with ``--strict-markers`` can use
them without declaring them; select or skip them with ``-m``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from runtime._redis_server import RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator


MARKERS = (
    "redis: needs a real redis-server (started by the test itself through the redis fixtures)",
    "e2e: real Hypercorn over TCP, or a real `python -m runtime` subprocess",
    "outage: long Redis outage scenarios (tens of seconds), run in CI",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register Switchyard's markers (``redis``, ``e2e``, ``outage``) for ``--strict-markers``."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)


@pytest.fixture(name="redis_server")
def _redis_server() -> Iterator[RedisServer]:
    """A running ``redis-server`` for this test only; stopped (if still running) afterwards."""
    with RedisServer() as server:
        yield server


@pytest.fixture(name="redis_server_session", scope="session")
def _redis_server_session() -> Iterator[RedisServer]:
    """One running ``redis-server`` shared by the session; do not stop it in a test."""
    with RedisServer() as server:
        yield server


@pytest.fixture(name="redis_url")
def _redis_url(redis_server_session: RedisServer) -> str:
    """The session server's URL, with database 0 flushed before the test."""
    import redis  # imported here: plugins load for every test run, Redis or not

    if not redis_server_session.running:
        # A test stopped the shared server against the rules above; bring it back
        # (same port) rather than failing every later test.
        redis_server_session.start()
    client = redis.Redis.from_url(redis_server_session.url, socket_timeout=5.0)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_session.url
