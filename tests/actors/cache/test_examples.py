"""The cache's README examples (``examples/cache_*.py``) run as a node would run them."""

from __future__ import annotations

import actors.cache
from actors.cache import CACHE
from examples import cache_site
from runtime import NodeSetup, Secret, Settings, TokenVerifier
from runtime.testing import open_app

SECRET = "a-cache-example-test-secret-32-bytes"


def compose(setup: NodeSetup) -> None:
    """What ``python -m runtime --app examples.cache_site:setup`` assembles."""
    actors.cache.install(setup)
    cache_site.setup(setup)


async def test_cache_site_serves_users_through_the_cache_and_forgets_them() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_app(settings, compose=compose) as (app, context):
        client = app.test_client()
        cache = context.get(CACHE)
        await cache.statistics()  # the warmer has asked the actor by now...
        assert await cache.get_or_set("site:config", cache_site.load_site_config) == {
            "theme": "dark",
            "features": ["search"],
        }
        response = await client.get("/site/users/1")
        assert response.status_code == 200
        assert await response.get_json() == {"user": {"id": 1, "name": "Ada"}, "theme": "dark"}
        assert await cache.get("user:1") == {"id": 1, "name": "Ada"}  # the key as written
        assert (await client.post("/site/users/forget")).status_code == 401
        token = TokenVerifier(SECRET, clock=context.clock).issue("ops", roles=("admin",))
        forgotten = await client.post(
            "/site/users/forget", headers={"Authorization": f"Bearer {token}"}
        )
        assert await forgotten.get_json() == {"removed": 1}
        assert await cache.get("user:1") is None
        assert (await cache.statistics()).loader_calls == 2  # the config, then user 1

