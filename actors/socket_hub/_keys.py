"""Where the hub keeps things in Redis, built in one place.

Every key of a room carries the room name as its hash tag, so one script
touching a room's history, its offset counter and its node set touches one
slot, and Redis Cluster can hold the rooms later without a change of design::

    {prefix}:hub:{<room>}:meta          hash: epoch, offset (the last one given)
    {prefix}:hub:{<room>}:history       stream: the last N frames, IDs 0-<offset>
    {prefix}:hub:{<room>}:nodes         sorted set: node id -> expiry (ms, Redis time)
    {prefix}:hub:{<room>}:presence:<node>   hash: user id -> msgpack [name, connections]

The room's fanout channel is ``hub.room.<32 hex of BLAKE2b(room)>``
(:func:`~._rooms.channel_segment`): channel names admit no ``:``.
"""

from __future__ import annotations

from runtime import redis_key

from ._rooms import channel_segment

__all__ = ["HubKeys"]


class HubKeys:
    """The Redis keys and fanout channel of every room, under one deployment ``prefix``."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _room(self, room: str, part: str) -> str:
        return redis_key(self.prefix, "hub", "{" + room + "}", part)

    def meta(self, room: str) -> str:
        """The hash holding the room's ``epoch`` and last ``offset``."""
        return self._room(room, "meta")

    def history(self, room: str) -> str:
        """The stream holding the room's last frames."""
        return self._room(room, "history")

    def nodes(self, room: str) -> str:
        """The sorted set of nodes with members in the room (score: expiry in ms)."""
        return self._room(room, "nodes")

    def presence(self, room: str, node_id: str) -> str:
        """The hash of one node's members of the room."""
        return self._room(room, "presence") + ":" + node_id

    @staticmethod
    def channel(room: str) -> str:
        """The fanout channel of the room."""
        return "hub.room." + channel_segment(room)
