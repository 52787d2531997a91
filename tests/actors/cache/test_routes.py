"""The cache's HTTP endpoints in process: admin token required, raw bodies, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from quart.testing import QuartClient

import actors.cache
from actors.cache import CACHE_SETTINGS, CacheSettings
from runtime import Secret, Settings, TokenVerifier
from runtime.testing import ManualClock, open_app

SECRET = "cache-routes-test-secret-32-bytes-long"


@asynccontextmanager
async def client_and_tokens() -> AsyncIterator[tuple[QuartClient, dict[str, str], dict[str, str]]]:
    clock = ManualClock(wall_start=1_800_000_000.0)
    settings = Settings(jwt_secret=Secret(SECRET), max_body_bytes=4096)
    sections = {CACHE_SETTINGS: CacheSettings(max_value_bytes=1024)}
    verifier = TokenVerifier(SECRET, clock=clock)
    admin = {"Authorization": f"Bearer {verifier.issue('root', roles=('admin',))}"}
    user = {"Authorization": f"Bearer {verifier.issue('alice', roles=('user',))}"}
    async with open_app(settings, compose=actors.cache.install, clock=clock, sections=sections) as (
        app,
        _,
    ):
        client = app.test_client()
        assert isinstance(client, QuartClient)
        yield client, admin, user


async def error(response: object) -> tuple[int, str]:
    body = await response.get_json()  # type: ignore[attr-defined]
    return response.status_code, body["error"]["code"]  # type: ignore[attr-defined]


async def test_put_get_delete_roundtrip_with_raw_bytes() -> None:
    async with client_and_tokens() as (client, admin, _):
        body = b"\x00\x01binary\xff"
        created = await client.put("/api/cache/users:1", data=body, headers=admin)
        assert created.status_code == 201
        assert await created.get_json() == {"key": "users:1", "bytes": len(body)}
        fetched = await client.get("/api/cache/users:1", headers=admin)
        assert fetched.status_code == 200
        assert await fetched.get_data() == body
        assert fetched.content_type == "application/octet-stream"
        deleted = await client.delete("/api/cache/users:1", headers=admin)
        assert await deleted.get_json() == {"deleted": "users:1"}
        assert await error(await client.get("/api/cache/users:1", headers=admin)) == (
            404,
            "not_found",
        )
        assert await error(await client.delete("/api/cache/users:1", headers=admin)) == (
            404,
            "not_found",
        )


async def test_ttl_from_the_query_string() -> None:
    async with client_and_tokens() as (client, admin, _):
        ok = await client.put("/api/cache/k?ttl_seconds=5", data=b"v", headers=admin)
        assert ok.status_code == 201
        bad = await client.put("/api/cache/k?ttl_seconds=soon", data=b"v", headers=admin)
        assert await error(bad) == (422, "invalid_ttl")
        negative = await client.put("/api/cache/k?ttl_seconds=-1", data=b"v", headers=admin)
        body = await negative.get_json()
        assert negative.status_code == 400
        assert body["error"] == {
            "code": "invalid_ttl",
            "message": "ttl_seconds must be a finite number > 0 and <= 2592000 (30 days), got -1.0",
        }


async def test_every_route_needs_an_admin_token() -> None:
    async with client_and_tokens() as (client, _, user):
        for method, path in (
            ("GET", "/api/cache/k"),
            ("PUT", "/api/cache/k"),
            ("DELETE", "/api/cache/k"),
            ("GET", "/api/cache-stats"),
            ("POST", "/api/cache/invalidate"),
        ):
            anonymous = await client.open(path, method=method)
            assert await error(anonymous) == (401, "missing_token"), (method, path)
            forbidden = await client.open(path, method=method, headers=user)
            assert await error(forbidden) == (403, "insufficient_role"), (method, path)


async def test_invalidate_by_pattern_and_tag() -> None:
    async with client_and_tokens() as (client, admin, _):
        for key in ("user:1", "user:2", "post:1"):
            await client.put(f"/api/cache/{key}", data=b"x", headers=admin)
        result = await client.post(
            "/api/cache/invalidate", json={"pattern": "user:*"}, headers=admin
        )
        assert await result.get_json() == {"removed": 2}
        assert (await client.get("/api/cache/post:1", headers=admin)).status_code == 200
        assert (await client.get("/api/cache/user:1", headers=admin)).status_code == 404
        none = await client.post("/api/cache/invalidate", json={"tag": "nothing"}, headers=admin)
        assert await none.get_json() == {"removed": 0}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"pattern": "a*", "tag": "t"}, 422, "validation_error"),
        ({"pattern": "a*", "extra": 1}, 422, "validation_error"),
        ({"pattern": ""}, 400, "invalid_pattern"),
        ({"tag": "two words"}, 400, "invalid_tag"),
    ],
)
async def test_invalidate_rejects_bad_requests(
    body: dict[str, object], status: int, code: str
) -> None:
    async with client_and_tokens() as (client, admin, _):
        response = await client.post("/api/cache/invalidate", json=body, headers=admin)
        assert await error(response) == (status, code)


async def test_oversized_values_and_bodies_are_refused_and_nothing_else_is_touched() -> None:
    async with client_and_tokens() as (client, admin, _):
        await client.put("/api/cache/keep", data=b"kept", headers=admin)
        too_big = await client.put("/api/cache/big", data=b"x" * 2000, headers=admin)
        assert await error(too_big) == (413, "value_too_large")
        too_long = await client.put("/api/cache/huge", data=b"x" * 5000, headers=admin)
        assert await error(too_long) == (413, "payload_too_large")
        assert await (await client.get("/api/cache/keep", headers=admin)).get_data() == b"kept"


async def test_invalid_key_is_a_clear_error() -> None:
    async with client_and_tokens() as (client, admin, _):
        response = await client.put("/api/cache/bad*key", data=b"x", headers=admin)
        assert await error(response) == (400, "invalid_key")


async def test_stats_report_hits_and_misses() -> None:
    async with client_and_tokens() as (client, admin, _):
        await client.put("/api/cache/a", data=b"1", headers=admin)
        await client.get("/api/cache/a", headers=admin)
        await client.get("/api/cache/missing", headers=admin)
        stats = await (await client.get("/api/cache-stats", headers=admin)).get_json()
        assert stats["l1_hits"] == 1
        assert stats["l1_misses"] == 1
        assert stats["l2_enabled"] is False
        assert stats["hit_ratio"] == 0.5


async def test_a_key_named_stats_or_invalidate_is_a_key_like_any_other() -> None:
    async with client_and_tokens() as (client, admin, _):
        for key in ("stats", "invalidate", "cache-stats"):
            put = await client.put(f"/api/cache/{key}", data=key.encode(), headers=admin)
            assert put.status_code == 201
            got = await client.get(f"/api/cache/{key}", headers=admin)
            assert (got.status_code, await got.get_data()) == (200, key.encode())
        stats = await (await client.get("/api/cache-stats", headers=admin)).get_json()
        assert stats["l1_entries"] == 3


async def test_slashes_in_a_key_path_are_the_key_never_a_redirect() -> None:
    async with client_and_tokens() as (client, admin, _):
        for key in ("a//b", "/lead", "trail/", "x///y"):
            put = await client.put(f"/api/cache/{key}", data=key.encode(), headers=admin)
            assert (put.status_code, await put.get_json()) == (201, {"key": key, "bytes": len(key)})
            got = await client.get(f"/api/cache/{key}", headers=admin)
            assert (got.status_code, await got.get_data()) == (200, key.encode())
        # "a//b" and "a/b" are two keys: nothing merged one into the other.
        assert await error(await client.get("/api/cache/a/b", headers=admin)) == (404, "not_found")
        deleted = await client.delete("/api/cache/a//b", headers=admin)
        assert await deleted.get_json() == {"deleted": "a//b"}


async def test_a_value_larger_than_all_of_l1_without_redis_is_413() -> None:
    clock = ManualClock(wall_start=1_800_000_000.0)
    settings = Settings(jwt_secret=Secret(SECRET), max_body_bytes=8192)
    sections = {CACHE_SETTINGS: CacheSettings(l1_max_bytes=1000)}
    token = TokenVerifier(SECRET, clock=clock).issue("root", roles=("admin",))
    admin = {"Authorization": f"Bearer {token}"}
    async with open_app(settings, compose=actors.cache.install, clock=clock, sections=sections) as (
        app,
        _,
    ):
        client = app.test_client()
        assert (await client.put("/api/cache/k", data=b"small", headers=admin)).status_code == 201
        too_big = await client.put("/api/cache/k", data=b"x" * 2000, headers=admin)
        assert await error(too_big) == (413, "value_too_large")
        kept = await client.get("/api/cache/k", headers=admin)
        assert await kept.get_data() == b"small"  # refused, and nothing changed
