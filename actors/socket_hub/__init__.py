"""The socket hub: authenticated WebSocket rooms with presence, resumable history and fanout."""

from ._frames import ClientFrame, ServerFrame
from ._keys import HubKeys
from ._rooms import check_access, parse_room, personal_room
from ._settings import HUB_SETTINGS, HubSettings

__all__ = [
    "HUB_SETTINGS",
    "ClientFrame",
    "HubKeys",
    "HubSettings",
    "ServerFrame",
    "check_access",
    "parse_room",
    "personal_room",
]
