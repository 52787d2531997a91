"""One actor incarnation's write path: the L1 change and its Redis side, in one step.

The cache actor owns L1, yet a ``set`` does not go through its mailbox: the
facade calls :meth:`Writes.set` in the caller's own task. That is safe on the
ETS model the table follows (:mod:`._table`): the whole L1 change runs without
an ``await``, so on the event loop it is atomic with respect to the actor's
handler, and it hands the Redis side to the ordered writer in the same step,
so the writer's order is L1's order. Everything the actor keeps about writes
stays true: the key's write epoch is bumped (a read that raced it cannot fill
L1), the writer tracks the key as pending until Redis has it (no fill from
Redis's older value, and a coherence reset keeps the entry), and a loader's
result still goes through the actor, which calls the same :meth:`Writes.set`.

The actor installs one :class:`Writes` per incarnation on the table
(:meth:`CacheTable.attach`) and removes it when it stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime import Rejected

from ._codec import pack_fields
from ._completion import Completion
from ._l1 import EntryTooLarge
from ._operations import Put

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._keys import KeySpace
    from ._l1 import L1Store
    from ._settings import CacheSettings
    from ._table import CacheTable
    from ._writer import OrderedWriter

__all__ = ["Writes"]

_NO_TAGS: frozenset[str] = frozenset()


class Writes:
    """Applies one incarnation's writes to its L1 and prepares their Redis side."""

    __slots__ = ("_keyspace", "_l1", "_max_l1_bytes", "_table", "_wall_time", "writer")

    def __init__(
        self,
        l1: L1Store,
        table: CacheTable,
        writer: OrderedWriter | None,
        *,
        keyspace: KeySpace,
        settings: CacheSettings,
        wall_time: Callable[[], float],
    ) -> None:
        self._l1 = l1
        self._table = table
        #: The incarnation's ordered writer, or ``None`` without an L2.
        self.writer = writer
        self._keyspace = keyspace
        self._max_l1_bytes = settings.l1_max_bytes
        self._wall_time = wall_time

    def set(
        self,
        key: str,
        value: object,
        payload: bytes,
        encoding: int,
        ttl_seconds: float,
        stale_seconds: float,
        tags: tuple[str, ...],
    ) -> Put | None:
        """Store a prepared value in L1; return its Redis write (``None`` without an L2).

        The caller hands the write to :attr:`writer` before its next ``await``.

        Raises:
            Rejected: ``value_too_large`` when there is no L2 and the value is
                larger than all of L1 (nothing could store it; nothing changed).
        """
        size = len(payload)
        writer = self.writer
        if writer is None and size > self._max_l1_bytes:
            raise Rejected(
                "value_too_large",
                f"the value is {size} bytes, larger than all of L1 "
                f"({self._max_l1_bytes} bytes, l1_max_bytes), and there is no "
                "Redis layer to store it",
            )
        try:
            self._l1.set(
                key,
                value,
                size_bytes=size,
                ttl_seconds=ttl_seconds,
                stale_seconds=stale_seconds,
                tags=frozenset(tags) if tags else _NO_TAGS,
            )
        except EntryTooLarge:
            pass  # larger than all of L1: it lives in L2 only (set() dropped the old copy)
        self._table.wrote(key)
        if writer is None:
            return None
        fresh_until = self._wall_time() + ttl_seconds
        keyspace = self._keyspace
        return Put(
            key=key,
            blob=pack_fields(payload, encoding, fresh_until, fresh_until + stale_seconds, tags),
            ttl_seconds=ttl_seconds + stale_seconds,
            tag_keys=tuple(keyspace.tag_key(tag) for tag in tags) if tags else (),
            completion=Completion(),
        )
