"""HTTP routes of the cache (admin token): ``/api/cache/{key}``, ``/api/cache-stats``.

Everything after ``/api/cache/`` is the key, exactly as sent: no route
shadows a key (the statistics live at ``/api/cache-stats``; ``POST
/api/cache/invalidate`` takes only POST, which no key route answers), and
repeated or leading slashes are part of the key, never merged or redirected.

A read that could not ask Redis says so: a miss is ``503 cache_unavailable``
with ``Retry-After: 1`` (the key may exist in Redis), and a hit served from
L1 alone carries ``X-Cache-Degraded: 1``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec
from quart import Blueprint, Response, request
from quart_schema import document_request, document_response
from werkzeug.routing import BaseConverter

from runtime import (
    ApiError,
    decode_body,
    document_errors,
    error_response,
    json_response,
    node_context,
    require_auth,
)

from ._facade import CACHE
from ._statistics import CacheStatistics

if TYPE_CHECKING:
    from quart.blueprints import BlueprintSetupState

    from ._facade import Cache

__all__ = [
    "DEGRADED_HEADER",
    "Deleted",
    "InvalidateRequest",
    "Invalidated",
    "Stored",
    "cache_blueprint",
]

ADMIN_ROLE = "admin"

#: The header on an answer served from L1 while Redis could not be asked.
DEGRADED_HEADER = "X-Cache-Degraded"


class _KeyConverter(BaseConverter):
    """The rest of the path, slashes and all (werkzeug's ``path`` refuses a leading one)."""

    regex = ".+"
    part_isolating = False


class InvalidateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/cache/invalidate``: exactly one of a glob ``pattern`` or a ``tag``."""

    pattern: str | None = None
    tag: str | None = None


class Invalidated(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``POST /api/cache/invalidate``: how many entries were removed."""

    removed: int


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``PUT /api/cache/<key>``: the key and the size of the value stored."""

    key: str
    bytes: int


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``DELETE /api/cache/<key>``: the key deleted."""

    deleted: str


def _cache() -> Cache:
    cache: Cache = node_context().get(CACHE)
    return cache


def _ttl_from_query() -> float | None:
    raw = request.args.get("ttl_seconds")
    if raw is None:
        return None
    try:
        ttl = float(raw)
    except ValueError:
        ttl = math.nan
    if not math.isfinite(ttl):
        raise ApiError(422, "invalid_ttl", f"ttl_seconds must be a number, got {raw[:40]!r}")
    return ttl


def _install_key_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("cachekey", _KeyConverter)


def cache_blueprint() -> Blueprint:
    """The cache's routes; every one needs a token with the ``admin`` role."""
    routes = Blueprint("cache", __name__, url_prefix="/api")
    # Registered before the routes below, which need the converter when they are added.
    routes.record_once(_install_key_converter)
    key_route = "/cache/<cachekey:key>"

    @routes.get("/cache-stats")
    @document_response(CacheStatistics)
    @document_errors(401, 403)
    @require_auth(role=ADMIN_ROLE)
    async def stats() -> Response:
        return json_response(await _cache().statistics())

    @routes.post("/cache/invalidate")
    @document_request(InvalidateRequest)
    @document_response(Invalidated)
    @document_errors(400, 401, 403, 422)
    @require_auth(role=ADMIN_ROLE)
    async def invalidate() -> Response:
        body = await decode_body(InvalidateRequest)
        if (body.pattern is None) == (body.tag is None):
            raise ApiError(422, "validation_error", "give exactly one of 'pattern' or 'tag'")
        cache = _cache()
        if body.pattern is not None:
            removed = await cache.invalidate_pattern(body.pattern)
        else:
            assert body.tag is not None
            removed = await cache.invalidate_tag(body.tag)
        return json_response(Invalidated(removed=removed))

    @routes.get(key_route, merge_slashes=False)
    @document_errors(401, 403, 404, 503)
    @require_auth(role=ADMIN_ROLE)
    async def get_value(key: str) -> Response:
        read = await _cache().read(key)
        if not read.found:
            if read.degraded:
                response = error_response(
                    503,
                    "cache_unavailable",
                    f"redis is unreachable and key {key[:80]!r} is not in this node's L1; retry",
                )
                response.headers["Retry-After"] = "1"
                return response
            raise ApiError(404, "not_found", f"no cache entry for key {key[:80]!r}")
        value = read.value
        if isinstance(value, bytes):
            response = Response(value, content_type="application/octet-stream")
        else:
            response = json_response(value)
        if read.degraded:
            response.headers[DEGRADED_HEADER] = "1"
        return response

    @routes.put(key_route, merge_slashes=False)
    @document_response(Stored, 201)
    @document_errors(400, 401, 403, 413, 422)
    @require_auth(role=ADMIN_ROLE)
    async def put_value(key: str) -> Response:
        ttl = _ttl_from_query()
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)  # as_text=False
        await _cache().set(key, body, ttl_seconds=ttl)
        return json_response(Stored(key=key, bytes=len(body)), 201)

    @routes.delete(key_route, merge_slashes=False)
    @document_response(Deleted)
    @document_errors(401, 403, 404)
    @require_auth(role=ADMIN_ROLE)
    async def delete_value(key: str) -> Response:
        cache = _cache()
        if not await cache.exists(key):
            raise ApiError(404, "not_found", f"no cache entry for key {key[:80]!r}")
        await cache.delete(key)
        return json_response(Deleted(deleted=key))

    return routes
