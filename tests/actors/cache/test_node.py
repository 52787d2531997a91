"""The cache in a whole node: the statistics registry, and module-level ``cached``."""

from __future__ import annotations

import pytest
from quart import Blueprint, Response

import actors.cache
from actors.cache import CACHE
from actors.cache._decorator import installed_cache
from runtime import NodeSetup, Secret, Settings, TokenVerifier, json_response
from runtime.testing import open_app

SECRET = "a-cache-node-test-secret-32-bytes!!"

LOADS: list[int] = []


# Decorated at import time, before any node exists, as cashews users write it.
@actors.cache.cached(ttl_seconds=60, key="user:{user_id}", tags=["users"])
async def load_user(user_id: int) -> dict[str, object]:
    LOADS.append(user_id)
    return {"id": user_id, "name": f"user {user_id}"}


def _admin(verifier: TokenVerifier | None) -> dict[str, str]:
    assert verifier is not None
    return {"Authorization": f"Bearer {verifier.issue('ops', roles=('admin',))}"}


def compose(setup: NodeSetup) -> None:
    actors.cache.install(setup)
    routes = Blueprint("users", __name__)

    @routes.get("/users/<int:user_id>")
    async def get_user(user_id: int) -> Response:
        return json_response(await load_user(user_id))

    setup.add_blueprint(routes)


async def test_api_statistics_lists_the_cache_with_its_channel_counters() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_app(settings, compose=compose) as (app, context):
        cache = context.get(CACHE)
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        response = await app.test_client().get("/api/statistics", headers=_admin(context.verifier))
        assert response.status_code == 200
        body = await response.get_json()
    stats = body["cache"]
    assert stats["l1_hits"] == 1
    assert stats["l1_entries"] == 1
    assert stats["invalidation_publish_failures"] == 0
    assert stats["invalidations_undecodable"] == 0
    assert stats["l2_enabled"] is False


async def test_module_level_cached_uses_the_cache_of_the_node_serving_the_request() -> None:
    LOADS.clear()
    async with open_app(compose=compose) as (app, context):
        client = app.test_client()
        installed_cache.set(None)  # so only the request's node_context() can find the cache
        for _ in range(3):
            response = await client.get("/users/1")
            assert response.status_code == 200
            assert await response.get_json() == {"id": 1, "name": "user 1"}
        assert LOADS == [1]
        cache = context.get(CACHE)
        # The key is what the decorator was given: readable and removable as written.
        assert await cache.get("user:1") == {"id": 1, "name": "user 1"}
        assert await cache.invalidate_pattern("user:*") == 1
        assert await cache.get("user:1") is None
        assert (await client.get("/users/1")).status_code == 200
        assert LOADS == [1, 1]
        assert await cache.invalidate_tag("users") == 1


async def test_module_level_cached_outside_a_request_uses_the_installed_cache() -> None:
    LOADS.clear()
    async with open_app(compose=compose) as (_, context):
        # The test body assembled the node: it (and the node's tasks) find its cache.
        assert actors.cache.current_cache() is context.get(CACHE)
        assert await load_user(5) == {"id": 5, "name": "user 5"}
        assert await load_user(5) == {"id": 5, "name": "user 5"}
        assert LOADS == [5]
        assert await context.get(CACHE).get("user:5") == {"id": 5, "name": "user 5"}


async def test_module_level_cached_with_no_node_running_says_so() -> None:
    token = installed_cache.set(None)
    try:
        with pytest.raises(RuntimeError, match="found no running node"):
            await load_user(1)
    finally:
        installed_cache.reset(token)


def test_the_decorator_keeps_the_function_name() -> None:
    assert (load_user.__name__, load_user.__module__) == ("load_user", __name__)
