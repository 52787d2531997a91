"""Room names, room types and who may join which room.

A room's name carries its type: ``<type>:<name>``. The type decides access,
so a client can never claim a laxer type for a room than the room has:

=============  ===================================================
type           who may join
=============  ===================================================
``public``     every authenticated user
``admin``      users with the ``admin`` role
``user``       ``user:<id>`` only the user whose token ``sub`` is ``<id>``
               (every connection is in its personal room from the start)
``project``    whoever the project policy allows (default: everyone;
               replace it with :meth:`Hub.set_project_policy` in the
               ``--app`` hook, with an ``async def``)
anything else  nobody
=============  ===================================================

Grammar: ``type`` is ``[a-z][a-z0-9_]{0,31}``; ``name`` is 1 to 256 characters
of letters, digits and ``_ . : @ + = | -`` (no spaces, braces, slashes or
glob characters), so a room name is safe in a Redis key's hash tag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable

from runtime import Principal, Rejected

__all__ = [
    "ProjectPolicy",
    "allow_all_projects",
    "channel_segment",
    "check_access",
    "parse_room",
    "personal_room",
]

ROOM_TYPES = ("public", "admin", "user", "project")
_ROOM = re.compile(r"([a-z][a-z0-9_]{0,31}):([A-Za-z0-9_.:@+=|-]{1,256})")

ProjectPolicy = Callable[[Principal, str], Awaitable[bool]]
"""``async def policy(principal, project_id) -> bool``: may this user join ``project:<id>``?"""


async def allow_all_projects(principal: Principal, project_id: str) -> bool:
    """The default project policy, as the blueprint has it: everyone may join."""
    return True


def parse_room(room: str, room_type: str | None = None) -> tuple[str, str]:
    """Split ``room`` into ``(type, name)``.

    Raises:
        Rejected: ``invalid_room`` (the name breaks the grammar) or
            ``room_type_mismatch`` (``room_type`` is not the name's type).
    """
    match = _ROOM.fullmatch(room)
    if match is None:
        shown = room if len(room) <= 64 else f"{room[:64]}..."
        raise Rejected(
            "invalid_room",
            f"room {shown!r} is not '<type>:<name>' (type: lower-case word; name: 1-256 "
            "letters, digits or _ . : @ + = | -)",
        )
    kind, name = match.group(1), match.group(2)
    if room_type is not None and room_type != kind:
        raise Rejected(
            "room_type_mismatch", f"room {room!r} is of type {kind!r}, not {room_type!r}"
        )
    return kind, name


def personal_room(user_id: str) -> str:
    """The personal room of ``user_id``: ``user:<id>``.

    Raises:
        Rejected: ``invalid_room`` when the id cannot be a room name.
    """
    room = f"user:{user_id}"
    parse_room(room)
    return room


async def check_access(
    principal: Principal,
    room: str,
    room_type: str | None,
    project_policy: ProjectPolicy,
) -> str:
    """Return the room's type if ``principal`` may join ``room``.

    Raises:
        Rejected: ``invalid_room``, ``room_type_mismatch`` or ``forbidden``.
    """
    kind, name = parse_room(room, room_type)
    if kind == "public":
        return kind
    if kind == "admin":
        if principal.has_role("admin"):
            return kind
        raise Rejected("forbidden", f"room {room!r} needs the 'admin' role")
    if kind == "user":
        if name == principal.subject:
            return kind
        raise Rejected("forbidden", f"room {room!r} is another user's personal room")
    if kind == "project":
        if await project_policy(principal, name):
            return kind
        raise Rejected("forbidden", f"the project policy does not let you join {room!r}")
    raise Rejected(
        "forbidden", f"rooms of type {kind!r} cannot be joined; known types: {list(ROOM_TYPES)}"
    )


def channel_segment(room: str) -> str:
    """The fanout-channel segment of ``room``: 32 hex digits of its BLAKE2b hash."""
    return hashlib.blake2b(room.encode(), digest_size=16).hexdigest()
