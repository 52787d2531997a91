"""The node's one described API: every route of the default node is in ``/openapi.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from quart import Blueprint, Response
from quart_schema import validate_request

from runtime import (
    NodeSetup,
    Secret,
    Settings,
    SystemClock,
    TokenVerifier,
    json_response,
    require_auth,
)
from runtime.node import compose
from runtime.testing import open_app

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

SECRET = "openapi-test-secret-32-bytes-long!!"
_SELF = {"openapi", "swagger_ui", "static"}


class _Echo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    count: int


def _openapi_path(rule: str) -> str:
    """Werkzeug's ``/a/<path:b>`` as OpenAPI's ``/a/{b}``."""
    out, rest = [], rule
    while "<" in rest:
        head, _, tail = rest.partition("<")
        variable, _, rest = tail.partition(">")
        out.append(head + "{" + variable.rpartition(":")[2] + "}")
    return "".join(out) + rest


def _with_echo(setup: NodeSetup) -> None:
    compose(setup)
    routes = Blueprint("echo", __name__)

    @routes.post("/test/echo")
    @validate_request(_Echo)
    @require_auth()
    async def echo(data: _Echo) -> Response:
        return json_response(data)

    setup.add_blueprint(routes)


async def _document(client: TestClientProtocol) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


async def test_every_route_of_the_default_node_is_described() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_app(settings, compose=compose) as (app, _):
        client = app.test_client()
        document = await _document(client)
        paths: dict[str, dict[str, Any]] = document["paths"]
        rules = [
            rule
            for rule in app.url_map.iter_rules()
            if rule.endpoint not in _SELF and not rule.websocket
        ]
        assert len(rules) >= 10  # health, index, statistics, cache, hub
        for rule in rules:
            path = _openapi_path(rule.rule)
            assert path in paths, f"{rule.rule} is not in /openapi.json"
            methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
            assert methods <= set(paths[path]), (rule.rule, methods, set(paths[path]))
        scheme = document["components"]["securitySchemes"]["bearer"]
        assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        assert document["security"] == [{"bearer": []}]
        assert paths["/healthz"]["get"]["security"] == []
        posted = paths["/api/rooms/{room}/messages"]["post"]
        assert "requestBody" in posted
        assert set(posted["responses"]) >= {"201", "401", "403", "422"}
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert b"/openapi.json" in await docs.get_data()


async def test_a_bad_body_gets_the_node_error_shape() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    verifier = TokenVerifier(SECRET, clock=SystemClock())
    admin = {"Authorization": f"Bearer {verifier.issue('root', roles=('admin',))}"}
    async with open_app(settings, compose=_with_echo) as (app, _):
        client = app.test_client()
        # quart-schema's validation (RequestSchemaValidationError) answers in the node's shape
        bad = await client.post("/test/echo", json={"name": "x", "count": "many"}, headers=admin)
        assert bad.status_code == 422
        body = await bad.get_json()
        assert set(body) == {"error"}
        assert body["error"]["code"] == "validation_error"
        assert "count" in body["error"]["message"]
        good = await client.post("/test/echo", json={"name": "x", "count": 2}, headers=admin)
        assert await good.get_json() == {"name": "x", "count": 2}
        # and so does the node's own decoding, on a described route
        wrong = await client.post("/api/rooms/lobby/messages", json={"message": 3}, headers=admin)
        assert wrong.status_code == 422
        assert (await wrong.get_json())["error"]["code"] == "validation_error"
        assert "/test/echo" in (await _document(client))["paths"]
