"""``GET /``: a small JSON index of the node, so a first request finds its way around.

The links are a fixed tuple of well-known names and paths (:data:`INDEX_LINKS`)
filtered by what the app really routes: a link shows up once a blueprint
serves its path with GET. Docs, metrics and a dashboard appear by themselves
when their packages land at those paths; nothing registers with the index, and
a name a client reads (``links["metrics"]``) never changes meaning.
"""

from __future__ import annotations

import functools
import importlib.metadata

import msgspec
from quart import Blueprint, Response, current_app
from quart_schema import document_response

from ._openapi import public
from ._responses import json_response

__all__ = ["INDEX_LINKS", "NodeIndex", "index_blueprint"]

#: Every link the index may show, in the order shown: (name, path).
INDEX_LINKS: tuple[tuple[str, str], ...] = (
    ("healthz", "/healthz"),
    ("readyz", "/readyz"),
    ("statistics", "/api/statistics"),
    ("docs", "/docs"),
    ("metrics", "/metrics"),
    ("dashboard", "/dashboard"),
)

index_blueprint = Blueprint("index", __name__)


class NodeIndex(msgspec.Struct, frozen=True, kw_only=True):
    """What ``GET /`` answers: who this is, where its status is, and what else it serves."""

    name: str
    version: str
    status: str
    links: dict[str, str]


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@index_blueprint.get("/")
@public
@document_response(NodeIndex)
async def index() -> Response:
    """The node's name, version, status link and the links it serves."""
    served = {
        rule.rule for rule in current_app.url_map.iter_rules() if "GET" in (rule.methods or ())
    }
    links = {name: path for name, path in INDEX_LINKS if path in served}
    body = NodeIndex(name="switchyard", version=_version(), status="/readyz", links=links)
    return json_response(body, 200)
