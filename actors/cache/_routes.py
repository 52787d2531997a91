"""HTTP routes of the cache (admin token): ``/api/cache/...``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec
from quart import Blueprint, Response, request

from runtime import ApiError, decode_body, json_response, node_context, require_auth

from ._facade import CACHE

if TYPE_CHECKING:
    from ._facade import Cache

__all__ = ["InvalidateRequest", "cache_blueprint"]

ADMIN_ROLE = "admin"


class InvalidateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``POST /api/cache/invalidate``: exactly one of a glob ``pattern`` or a ``tag``."""

    pattern: str | None = None
    tag: str | None = None


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


def cache_blueprint() -> Blueprint:
    """The cache's routes; every one needs a token with the ``admin`` role."""
    routes = Blueprint("cache", __name__, url_prefix="/api/cache")

    @routes.get("/stats")
    @require_auth(role=ADMIN_ROLE)
    async def stats() -> Response:
        return json_response(await _cache().statistics())

    @routes.post("/invalidate")
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
        return json_response({"removed": removed})

    @routes.get("/<path:key>")
    @require_auth(role=ADMIN_ROLE)
    async def get_value(key: str) -> Response:
        value = await _cache().get(key, default=_ABSENT)
        if value is _ABSENT:
            raise ApiError(404, "not_found", f"no cache entry for key {key[:80]!r}")
        if isinstance(value, bytes):
            return Response(value, content_type="application/octet-stream")
        return json_response(value)

    @routes.put("/<path:key>")
    @require_auth(role=ADMIN_ROLE)
    async def put_value(key: str) -> Response:
        ttl = _ttl_from_query()
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)  # as_text=False
        await _cache().set(key, body, ttl_seconds=ttl)
        return json_response({"key": key, "bytes": len(body)}, 201)

    @routes.delete("/<path:key>")
    @require_auth(role=ADMIN_ROLE)
    async def delete_value(key: str) -> Response:
        cache = _cache()
        if not await cache.exists(key):
            raise ApiError(404, "not_found", f"no cache entry for key {key[:80]!r}")
        await cache.delete(key)
        return json_response({"deleted": key})

    return routes


_ABSENT = object()
