"""The composition root: the default node that ``python -m runtime`` runs.

This is the one module of ``runtime/`` that knows particular actors. It adds
them to a :class:`~runtime.NodeSetup`; the user's ``--app`` hook runs after it
and may add more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._boot import NodeSetup

__all__ = ["compose"]


def compose(setup: NodeSetup) -> None:
    """Add Switchyard's own actors to the node, in start order."""
    del setup  # the built-in actors (cache, socket-hub, queue, metrics) join here as they land
