"""``GET /``: the node's JSON index (name, version, status, and the links it serves)."""

from __future__ import annotations

import importlib.metadata

from quart import Blueprint

from runtime import NodeSetup
from runtime.testing import open_app


async def test_index_names_the_node_and_links_what_it_serves() -> None:
    async with open_app() as (app, _):
        response = await app.test_client().get("/")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        body = await response.get_json()
    assert body["name"] == "switchyard"
    assert body["version"] == importlib.metadata.version("switchyard")
    assert body["status"] == "/readyz"
    assert body["links"]["healthz"] == "/healthz"
    assert body["links"]["readyz"] == "/readyz"
    assert body["links"]["docs"] == "/docs"  # served by the OpenAPI hook-up
    assert "dashboard" not in body["links"]  # not served yet


async def test_a_link_appears_once_a_blueprint_serves_its_path() -> None:
    metrics = Blueprint("metrics_test", __name__)

    @metrics.get("/metrics")
    async def scrape() -> str:
        return ""

    def install(setup: NodeSetup) -> None:
        setup.add_blueprint(metrics)

    async with open_app(compose=install) as (app, _):
        body = await (await app.test_client().get("/")).get_json()
    assert body["links"]["metrics"] == "/metrics"


async def test_an_apps_own_root_route_wins() -> None:
    home = Blueprint("home_test", __name__)

    @home.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    def install(setup: NodeSetup) -> None:
        setup.add_blueprint(home)

    async with open_app(compose=install) as (app, _):
        assert await (await app.test_client().get("/")).get_json() == {"hello": "world"}
