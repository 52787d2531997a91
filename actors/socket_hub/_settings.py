"""The socket hub's settings: a section of the node's configuration (``SWITCHYARD_HUB_*``).

``HUB_SETTINGS`` is what :func:`actors.socket_hub.install` reads with
``setup.section(HUB_SETTINGS)``; ``python -m runtime --help`` lists it under
"Socket hub". Token settings are the node's own (``SWITCHYARD_JWT_*``): one
verifier serves HTTP and WebSockets.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from runtime import SettingsSection

__all__ = ["HUB_SETTINGS", "HubSettings"]


class HubSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How one node's socket hub behaves; every field is a ``SWITCHYARD_HUB_<FIELD>`` variable."""

    history_size: Annotated[
        int, Meta(ge=1, le=100_000, description="Frames each room keeps for recovery.")
    ] = 100
    history_ttl_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=2_592_000,
            description="A room's history is forgotten this long after its last frame.",
        ),
    ] = 86_400.0
    memory_history_rooms: Annotated[
        int,
        Meta(
            ge=1,
            le=10_000_000,
            description="Rooms whose history a node without Redis keeps (least recent go first).",
        ),
    ] = 100_000
    max_message_chars: Annotated[
        int, Meta(ge=1, le=1_000_000, description="Longest chat message, in characters.")
    ] = 1000
    max_frame_bytes: Annotated[
        int,
        Meta(
            ge=256,
            le=16_777_216,
            description="Largest client frame, in bytes; larger ones get frame_too_large.",
        ),
    ] = 16_384
    outbox_size: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description=(
                "Frames that may wait to be written to one connection; past it a slow client "
                "is disconnected (4008) and recovers from history."
            ),
        ),
    ] = 1024
    rooms_per_connection: Annotated[
        int, Meta(ge=1, le=100_000, description="Rooms one connection may be in.")
    ] = 100
    connections_per_user: Annotated[
        int, Meta(ge=1, le=100_000, description="Connections one user may hold on a node.")
    ] = 16
    rate_per_second: Annotated[
        float, Meta(gt=0, le=1_000_000, description="Frames per second a connection may send.")
    ] = 50.0
    rate_burst: Annotated[
        int, Meta(ge=1, le=1_000_000, description="Frames a connection may send in a burst.")
    ] = 100
    rate_strikes: Annotated[
        int,
        Meta(
            ge=1,
            le=1_000_000,
            description="Frames refused for the rate limit in a row before the close (4029).",
        ),
    ] = 20
    auth_timeout_seconds: Annotated[
        float,
        Meta(gt=0, le=300, description="Seconds a client has to send its auth frame."),
    ] = 5.0
    expiry_warning_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=86_400,
            description="Seconds before a token expires that the client gets token_expiring.",
        ),
    ] = 60.0
    idle_timeout_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=86_400,
            description=(
                "A connection that sends no frame this long is closed as dead (clients ping "
                "more often)."
            ),
        ),
    ] = 75.0
    presence_heartbeat_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description=(
                "Seconds between a node's presence heartbeats in Redis; a dead node's presence "
                "expires after twice this."
            ),
        ),
    ] = 5.0
    presence_events_max_members: Annotated[
        int,
        Meta(
            ge=0,
            le=1_000_000,
            description=(
                "Rooms with more users than this on a node get no user_joined_room / "
                "user_left_room frames (each would go to every member)."
            ),
        ),
    ] = 100
    presence_frame_max_members: Annotated[
        int,
        Meta(
            ge=0,
            le=1_000_000,
            description="Most members listed in the presence frame that follows a join.",
        ),
    ] = 100
    gap_wait_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=60,
            description=(
                "Seconds a room waits for a missing offset from the fanout before it reads "
                "the history instead."
            ),
        ),
    ] = 0.25
    reconnect_max_ms: Annotated[
        int,
        Meta(
            ge=0,
            le=600_000,
            description="Most a client is told to wait before reconnecting on shutdown (jittered).",
        ),
    ] = 2000
    allow_service_send: Annotated[
        bool,
        Meta(
            description=(
                "Tokens with the 'service' role may post to rooms over HTTP (admin always may)."
            )
        ),
    ] = True


HUB_SETTINGS = SettingsSection(
    "hub",
    HubSettings,
    title="Socket hub",
    description="WebSocket rooms at /ws: limits, history, presence and shutdown.",
)
