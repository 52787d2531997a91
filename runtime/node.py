"""The composition root: the default node that ``python -m runtime`` runs.

This is the one module of ``runtime/`` that knows particular actors. It adds
them to a :class:`~runtime.NodeSetup` in start order; the user's ``--app``
hook runs after it and may add more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import actors.cache
import actors.queue
import actors.socket_hub

if TYPE_CHECKING:
    from ._boot import NodeSetup
    from ._sections import SettingsSection

__all__ = ["SECTIONS", "compose"]

#: The settings sections of Switchyard's own actors: validated at boot and listed in ``--help``.
SECTIONS: tuple[SettingsSection[Any], ...] = (
    actors.cache.CACHE_SETTINGS,
    actors.socket_hub.HUB_SETTINGS,
    actors.queue.QUEUE_SETTINGS,
)


def compose(setup: NodeSetup) -> None:
    """Add Switchyard's own actors to the node, in start order."""
    actors.cache.install(setup)
    actors.socket_hub.install(setup)
    actors.queue.install(setup)
