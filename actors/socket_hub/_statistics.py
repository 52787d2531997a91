"""The hub's counters and the statistics it reports (``GET /api/statistics`` → ``hub``)."""

from __future__ import annotations

import msgspec

from ._history import HistoryStatistics
from ._presence import PresenceStatistics

__all__ = ["HubCounters", "HubStatistics"]


class HubStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one node's hub.

    ``deliveries`` counts frames queued to connections; ``coalesced`` progress
    frames replaced in an outbox by a later one (ended and open connections);
    ``slow_disconnects`` connections closed because their outbox overflowed
    (4008); ``bad_frames`` frames refused as malformed, unknown or invalid;
    ``duplicates``
    frames that reached a room twice (fanout and history) and were dropped once;
    ``refills`` history reads that filled a gap, ``lost`` offsets neither the
    fanout nor the history could supply; ``degraded_sends`` messages delivered
    on this node only because Redis was unavailable (no offset, not recoverable).
    """

    connections: int
    users: int
    rooms: int
    connects: int
    disconnects: int
    refused_connections: int
    joins: int
    leaves: int
    messages: int
    deliveries: int
    remote_frames: int
    duplicates: int
    coalesced: int
    slow_disconnects: int
    rate_limited: int
    rate_limit_closes: int
    bad_frames: int
    expiry_warnings: int
    idle_closes: int
    refreshes: int
    replays: int
    replays_unrecovered: int
    refills: int
    lost: int
    gaps: int
    epoch_changes: int
    degraded_sends: int
    fanout_deaf: bool
    canary_round_trip_ms: float | None
    history: HistoryStatistics
    presence: PresenceStatistics


class HubCounters:
    """The mutable counters behind :class:`HubStatistics`; they outlive actor incarnations."""

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects = 0
        self.refused_connections = 0
        self.joins = 0
        self.leaves = 0
        self.messages = 0
        self.deliveries = 0
        self.remote_frames = 0
        self.duplicates = 0
        self.coalesced = 0
        self.slow_disconnects = 0
        self.rate_limited = 0
        self.rate_limit_closes = 0
        self.bad_frames = 0
        self.expiry_warnings = 0
        self.idle_closes = 0
        self.refreshes = 0
        self.replays = 0
        self.replays_unrecovered = 0
        self.refills = 0
        self.lost = 0
        self.gaps = 0
        self.epoch_changes = 0
        self.degraded_sends = 0
