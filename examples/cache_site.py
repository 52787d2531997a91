# examples/cache_site.py
"""Caching in a setup hook: a warmed key, a module-level cached loader, invalidation.

Run it with ``python -m runtime --app examples.cache_site:setup`` (the default
node installs the cache; this hook requires it).
"""

from quart import Blueprint

import actors.cache
from actors.cache import CACHE
from runtime import NodeSetup, node_context, require_auth

USERS = {1: {"id": 1, "name": "Ada"}, 2: {"id": 2, "name": "Grace"}}  # stands for a database


async def load_site_config() -> dict[str, object]:
    return {"theme": "dark", "features": ["search"]}


# At module level: each call finds the cache of the node it runs in.
@actors.cache.cached(ttl_seconds=60, key="user:{user_id}", tags=["users"])
async def load_user(user_id: int) -> dict[str, object] | None:
    return USERS.get(user_id)


routes = Blueprint("site", __name__)


@routes.get("/site/users/<int:user_id>")
async def show_user(user_id: int) -> dict[str, object]:
    cache = node_context().get(CACHE)
    config = await cache.get("site:config", default={})
    return {"user": await load_user(user_id), "theme": config.get("theme")}


@routes.post("/site/users/forget")
@require_auth(role="admin")
async def forget_users() -> dict[str, int]:
    cache = node_context().get(CACHE)
    # The keys are what @cached was given: "user:1", "user:2", ...
    return {"removed": await cache.invalidate_pattern("user:*")}


def setup(node: NodeSetup) -> None:
    cache = node.require(CACHE)
    # Loaded at start, then refreshed every 5 minutes.
    cache.warm("site:config", load_site_config, ttl_seconds=600, refresh_seconds=300)
    node.add_blueprint(routes)
