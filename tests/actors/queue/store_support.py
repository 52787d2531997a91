"""Helpers for the queue store tests: a fresh store per test, memory or Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from actors.queue._keys import QueueKeys
from actors.queue._model import JobOptions, NewJob
from actors.queue._store_memory import MemoryJobStore
from actors.queue._store_redis import RedisJobStore
from runtime import RedisLink
from runtime.testing import ManualClock

__all__ = ["QUEUES", "make_store", "new_job"]

QUEUES = ("default", "email")


def new_job(
    suffix: str,
    *,
    queue: str = "default",
    now: float = 1000.0,
    run_at: float | None = None,
    user_id: str | None = None,
    **options: object,
) -> NewJob:
    """A job of ``queue`` with id ``<queue>.<suffix>`` and the given options."""
    return NewJob(
        id=f"{queue}.{suffix}",
        queue=queue,
        type="t",
        payload=b'{"n":1}',
        options=JobOptions(**options),  # type: ignore[arg-type]
        user_id=user_id,
        run_at=now if run_at is None else run_at,
        created_at=now,
    )


async def make_store(
    request: pytest.FixtureRequest,
    kind: str,
    *,
    outbox_size: int = 10_000,
    rate_limits: Mapping[str, tuple[int, float]] | None = None,
) -> AsyncIterator[MemoryJobStore | RedisJobStore]:
    """Yield an opened store of ``kind`` (``memory`` or ``redis``) on a flushed Redis."""
    if kind == "memory":
        yield MemoryJobStore(QUEUES, outbox_size=outbox_size, rate_limits=rate_limits)
        return
    url: str = request.getfixturevalue("redis_url")
    async with RedisLink(url, clock=ManualClock()) as link:
        store = RedisJobStore(
            link, QueueKeys("t"), QUEUES, rate_limits=rate_limits, outbox_size=outbox_size
        )
        await store.open()
        yield store
