"""One WebSocket connection as the hub knows it, and its rate limiter."""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime import Principal, WebSocketSession

__all__ = ["Connection", "TokenBucket"]

_ids = itertools.count(1)
_NODE_TAG = secrets.token_hex(3)


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; ``False`` when the bucket is empty."""
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class Connection:
    """An authenticated connection: its session, who it is, and the rooms it is in.

    The ``/ws`` route creates it and owns ``principal``, ``last_seen``,
    ``bucket`` and ``strikes``; the hub actor alone changes ``rooms`` (the
    rooms it is a member of) and ``warned_expiry``. ``ended`` is set once, by
    :meth:`Hub.disconnect`, when its session's counters join the hub's.
    Hashable by identity.
    """

    __slots__ = (
        "bucket",
        "ended",
        "id",
        "last_seen",
        "personal_room",
        "principal",
        "rooms",
        "session",
        "strikes",
        "warned_expiry",
    )

    def __init__(
        self,
        session: WebSocketSession,
        principal: Principal,
        personal_room: str,
        bucket: TokenBucket,
        now: float,
    ) -> None:
        self.id = f"{_NODE_TAG}-{next(_ids)}"
        self.session = session
        self.principal = principal
        self.personal_room = personal_room
        self.bucket = bucket
        self.last_seen = now
        self.strikes = 0
        self.rooms: dict[str, None] = {}
        self.warned_expiry = False
        self.ended = False

    @property
    def user_id(self) -> str:
        """The token's ``sub``."""
        return self.principal.subject

    @property
    def user_name(self) -> str | None:
        """The token's ``name`` claim."""
        return self.principal.name

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, user_id={self.user_id!r}, rooms={len(self.rooms)})"
