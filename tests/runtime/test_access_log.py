"""The access log: one DEBUG record on ``runtime.access`` per request and per WebSocket."""

from __future__ import annotations

import logging

import pytest
from quart import Blueprint, websocket

from runtime import NodeSetup
from runtime.testing import ManualClock, open_app

clock = ManualClock()
routes = Blueprint("access_log_test", __name__)


@routes.get("/slow")
async def slow() -> dict[str, bool]:
    clock.advance(0.25)  # the handler "takes" 250 ms on the node's clock
    return {"ok": True}


@routes.websocket("/echo")
async def echo() -> None:
    message = await websocket.receive()
    clock.advance(1.5)
    await websocket.send(message)


def install(setup: NodeSetup) -> None:
    setup.add_blueprint(routes)


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "runtime.access"]


async def test_one_record_per_request_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.access")
    async with open_app(compose=install, clock=clock) as (app, _):
        client = app.test_client()
        response = await client.get("/slow?token=s3cret", headers={"X-Request-ID": "req-1"})
        assert response.status_code == 200
        assert (await client.get("/missing")).status_code == 404
    first, second = access_records(caplog)
    assert first.levelno == logging.DEBUG
    assert first.getMessage() == "GET /slow 200 250.0 ms (request id req-1)"
    fields = ("method", "path", "status", "duration_ms", "request_id")
    assert [getattr(first, name) for name in fields] == ["GET", "/slow", 200, 250.0, "req-1"]
    assert [getattr(second, name) for name in fields[1:4]] == ["/missing", 404, 0.0]
    assert "s3cret" not in caplog.text  # the query string (it may hold a token) is never logged


async def test_one_record_per_websocket_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="runtime.access")
    async with (
        open_app(compose=install, clock=clock) as (app, _),
        app.test_client().websocket("/echo") as socket,
    ):
        await socket.send("hi")
        assert await socket.receive() == "hi"
    (record,) = access_records(caplog)
    assert record.getMessage().startswith("WEBSOCKET /echo 101 1500.0 ms (request id ")


async def test_nothing_is_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.access")
    async with open_app(compose=install, clock=clock) as (app, _):
        assert (await app.test_client().get("/slow")).status_code == 200
    assert access_records(caplog) == []
