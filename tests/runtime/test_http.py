"""The HTTP edge in process: JSON errors, request ids, auth, body limits, CORS, health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
from quart import Blueprint, Quart, abort, g

from runtime import (
    ApiError,
    ChildSpec,
    Message,
    NodeSetup,
    Rejected,
    Secret,
    Settings,
    TokenVerifier,
    current_principal,
    decode_body,
    node_context,
    require_auth,
)
from runtime.testing import ManualClock, Probe, open_app

SECRET = "a-test-secret-that-is-32-bytes-long!"


class Greeting(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    times: int = 1


class Lookup(Message, tag="test.lookup", kw_only=True, frozen=True):
    key: str


def _routes() -> Blueprint:
    bp = Blueprint("test_routes", __name__)

    @bp.post("/greet")
    async def greet() -> dict[str, str]:
        body = await decode_body(Greeting)
        return {"greeting": " ".join([f"hello {body.name}"] * body.times)}

    @bp.get("/me")
    @require_auth()
    async def me() -> dict[str, object]:
        principal = current_principal()
        return {"sub": principal.subject, "roles": sorted(principal.roles)}

    @bp.get("/admin")
    @require_auth(role="admin")
    async def admin() -> dict[str, str]:
        return {"ok": "yes"}

    @bp.get("/gone")
    async def gone() -> dict[str, str]:
        abort(404, description="that greeting was withdrawn")

    @bp.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret internals: password=hunter2")

    @bp.get("/slow-down")
    async def slow_down() -> dict[str, str]:
        raise ApiError(429, "rate_limited", "too many requests; retry in 1s")

    @bp.get("/own-request-id")
    async def own_request_id() -> tuple[dict[str, object], dict[str, str]]:
        return {"g": g.request_id, "get": g.get("request_id")}, {"X-Request-ID": "the-app-s"}

    @bp.get("/lookup/<key>")
    async def lookup(key: str) -> dict[str, object]:
        return {"value": await node_context().refs["probe"].ask(Lookup(key=key))}

    return bp


def _reply(message: Lookup) -> str:
    if message.key == "missing":
        raise Rejected("not_found", f"no entry {message.key!r}")
    return message.key.upper()


@asynccontextmanager
async def node_app() -> AsyncIterator[Quart]:
    """A node's app around a running supervisor (task groups cannot span a fixture's yield)."""
    clock = ManualClock(wall_start=1_800_000_000.0)
    settings = Settings(
        jwt_secret=Secret(SECRET), max_body_bytes=64, cors_origins=("https://app.example",)
    )

    def compose(node: NodeSetup) -> None:
        node.add_actor(ChildSpec("probe", lambda: Probe(reply=_reply)))
        node.add_blueprint(_routes())

    async with open_app(settings, compose=compose, clock=clock) as (app, context):
        app.extensions["test_verifier"] = context.verifier
        yield app


def token(app: Quart, sub: str = "alice", roles: tuple[str, ...] = ()) -> str:
    verifier: TokenVerifier = app.extensions["test_verifier"]
    return verifier.issue(sub, roles=roles)


async def error_of(response: object) -> tuple[int, str, str]:
    body = await response.get_json()  # type: ignore[attr-defined]
    return response.status_code, body["error"]["code"], body["error"]["message"]  # type: ignore[attr-defined]


async def test_healthz_and_readyz() -> None:
    async with node_app() as app:
        client = app.test_client()
        assert await (await client.get("/healthz")).get_json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert await ready.get_json() == {
            "status": "ready",
            "reasons": [],
            "actors": {"probe": "running"},
            "services": {"runtime.fanout": "running"},
            "redis": None,
        }


async def test_readyz_is_503_with_reasons_while_stopping() -> None:
    async with node_app() as app:
        app.extensions["switchyard"].stopping.set()
        response = await app.test_client().get("/readyz")
        assert response.status_code == 503
        assert (await response.get_json())["reasons"] == ["the node is shutting down"]


async def test_not_found_and_method_not_allowed_are_json() -> None:
    async with node_app() as app:
        client = app.test_client()
        status, code, message = await error_of(await client.get("/nowhere"))
        assert (status, code, message) == (404, "not_found", "no route for GET /nowhere")
        response = await client.delete("/healthz")
        status, code, message = await error_of(response)
        assert (status, code) == (405, "method_not_allowed")
        assert message.startswith("method DELETE is not allowed for /healthz; allowed: ")
        assert "GET" in message.partition("allowed: ")[2]
        assert "GET" in response.headers["Allow"]


async def test_an_abort_with_its_own_description_keeps_it() -> None:
    async with node_app() as app:
        status, code, message = await error_of(await app.test_client().get("/gone"))
        assert (status, code, message) == (404, "not_found", "that greeting was withdrawn")


async def test_valid_body_is_decoded() -> None:
    async with node_app() as app:
        response = await app.test_client().post("/greet", json={"name": "ada", "times": 2})
        assert await response.get_json() == {"greeting": "hello ada hello ada"}


async def test_malformed_json_is_400() -> None:
    async with node_app() as app:
        response = await app.test_client().post("/greet", data=b"{nope")
        status, code, message = await error_of(response)
        assert (status, code) == (400, "malformed_json")
        assert message.startswith("request body is not valid JSON: ")


async def test_invalid_payload_is_422_with_the_path() -> None:
    async with node_app() as app:
        response = await app.test_client().post("/greet", json={"name": "ada", "times": "x"})
        assert await error_of(response) == (
            422,
            "validation_error",
            "Expected `int`, got `str` - at `$.times`",
        )
        response = await app.test_client().post("/greet", json={"name": "ada", "admin": True})
        assert await error_of(response) == (
            422,
            "validation_error",
            "Object contains unknown field `admin`",
        )


async def test_oversized_body_is_413() -> None:
    async with node_app() as app:
        response = await app.test_client().post("/greet", data=b'{"name": "' + b"x" * 100 + b'"}')
        assert await error_of(response) == (
            413,
            "payload_too_large",
            "request body exceeds the limit of 64 bytes",
        )


async def test_auth_missing_invalid_and_valid_token() -> None:
    async with node_app() as app:
        client = app.test_client()
        response = await client.get("/me")
        assert await error_of(response) == (
            401,
            "missing_token",
            "no Authorization header; send 'Bearer <token>'",
        )
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="switchyard"'
        status, code, _ = await error_of(
            await client.get("/me", headers={"Authorization": "Bearer x.y.z"})
        )
        assert (status, code) == (401, "malformed_token")
        ok = await client.get(
            "/me", headers={"Authorization": f"Bearer {token(app, roles=('ops',))}"}
        )
        assert await ok.get_json() == {"sub": "alice", "roles": ["ops"]}


async def test_role_is_required_for_admin_routes() -> None:
    async with node_app() as app:
        client = app.test_client()
        user = {"Authorization": f"Bearer {token(app)}"}
        status, code, message = await error_of(await client.get("/admin", headers=user))
        assert (status, code) == (403, "insufficient_role")
        assert message.startswith("role 'admin' is required")
        admin = {"Authorization": f"Bearer {token(app, roles=('admin',))}"}
        assert (await client.get("/admin", headers=admin)).status_code == 200


async def test_unexpected_error_is_500_without_internals_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with node_app() as app:
        caplog.set_level(logging.ERROR)
        response = await app.test_client().get("/boom", headers={"X-Request-ID": "req-42"})
        assert await error_of(response) == (
            500,
            "internal_error",
            "internal server error; quote request id req-42",
        )
        assert "hunter2" not in (await response.get_data(as_text=True))
        records = [r for r in caplog.records if r.name == "runtime.http"]
        assert [r.getMessage() for r in records] == [
            "unhandled error in GET /boom (request id req-42)"
        ]
        assert records[0].exc_info is not None


async def test_rate_limit_error_is_429() -> None:
    async with node_app() as app:
        assert await error_of(await app.test_client().get("/slow-down")) == (
            429,
            "rate_limited",
            "too many requests; retry in 1s",
        )


async def test_actor_rejection_maps_to_its_status() -> None:
    async with node_app() as app:
        client = app.test_client()
        assert await (await client.get("/lookup/abc")).get_json() == {"value": "ABC"}
        assert await error_of(await client.get("/lookup/missing")) == (
            404,
            "not_found",
            "no entry 'missing'",
        )


async def test_request_id_is_generated_or_echoed() -> None:
    async with node_app() as app:
        client = app.test_client()
        echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["X-Request-ID"] == "abc-123"
        generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
        assert len(generated.headers["X-Request-ID"]) == 32
        assert int(generated.headers["X-Request-ID"], 16) >= 0  # hex digits
        too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 65})
        assert len(too_long.headers["X-Request-ID"]) == 32
        other = await client.get("/healthz")
        assert other.headers["X-Request-ID"] != generated.headers["X-Request-ID"]


async def test_the_request_id_is_gs_in_the_handler_and_replaces_the_apps_own() -> None:
    async with node_app() as app:
        client = app.test_client()
        response = await client.get("/own-request-id", headers={"X-Request-ID": "req-9"})
        assert await response.get_json() == {"g": "req-9", "get": "req-9"}
        assert response.headers.getlist("X-Request-ID") == ["req-9"]
        generated = await client.get("/own-request-id")
        body = await generated.get_json()
        assert generated.headers.getlist("X-Request-ID") == [body["g"]]
        assert len(body["g"]) == 32


async def test_cors_allows_only_configured_origins() -> None:
    async with node_app() as app:
        client = app.test_client()
        preflight = await client.options(
            "/me",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        other = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
