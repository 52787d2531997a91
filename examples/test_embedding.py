# examples/test_embedding.py
"""Embedding actors in tests: a pytest file to copy into your project (adapt the imports).

It needs pytest and pytest-asyncio, and marks its tests ``@pytest.mark.asyncio``
so it works under pytest-asyncio's default (strict) mode. Switchyard's pytest
plugin, loaded automatically, brings the ``redis_url`` fixture (a private
``redis-server`` on a free port) and registers the ``redis`` marker.
"""

import pytest

from examples.greeter_node import Greet, Greeter, setup
from runtime import ChildSpec, Secret, Settings
from runtime.testing import Probe, open_app, open_system


@pytest.mark.asyncio
async def test_greeter() -> None:
    async with open_system([ChildSpec("greeter", Greeter)]) as refs:
        assert await refs["greeter"].ask(Greet(name="ada")) == "hello ada"


@pytest.mark.asyncio
async def test_a_probe_records_what_it_is_told() -> None:
    probe = Probe()
    async with open_system([ChildSpec("probe", lambda: probe)]) as refs:
        await refs["probe"].tell(Greet(name="ada"))
        assert await probe.expect(Greet) == Greet(name="ada")


@pytest.mark.asyncio
async def test_the_greet_route_needs_a_token() -> None:
    settings = Settings(jwt_secret=Secret("a-secret-for-tests-only-32-bytes-long"))
    async with open_app(settings, compose=setup) as (app, node):
        client = app.test_client()
        assert (await client.get("/greet/ada")).status_code == 401
        assert node.verifier is not None
        token = node.verifier.issue("ada")
        response = await client.get("/greet/ada", headers={"Authorization": f"Bearer {token}"})
        assert await response.get_json() == {"greeting": "hello ada"}


@pytest.mark.redis
@pytest.mark.asyncio
async def test_a_node_on_redis_is_ready_and_greets(redis_url: str) -> None:
    async with open_app(compose=setup, redis_url=redis_url) as (app, node):
        assert node.redis is not None and node.redis.status().up
        assert (await app.test_client().get("/readyz")).status_code == 200
        assert await node.refs["greeter"].ask(Greet(name="bob")) == "hello bob"
