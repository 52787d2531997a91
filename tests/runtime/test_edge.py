"""The HTTP edge of a real node (``python -m runtime`` over TCP): bodies, shutdown, framing.

Each test drives a real node with raw sockets or httpx and reads its log:
invalid UTF-8 in a JSON body, a request outliving the shutdown grace, a
second SIGTERM with requests in flight, a stalled request body, and the
errors Hypercorn answers itself before the app is called.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from runtime import ConfigError, FrameDecoder, FrameError, Message
from runtime._configuration import load_configuration
from runtime._drain import RequestDrain
from runtime.testing import NodeProcess, serve_app

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])
APP = ["--app", "tests.apps.edge_app:setup"]
STOPPING = {"error": {"code": "unavailable", "message": "the node is stopping"}}


def edge_node(**settings: str) -> NodeProcess:
    env = {f"SWITCHYARD_{name.upper()}": value for name, value in settings.items()}
    return NodeProcess(env, args=APP, cwd=ROOT)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length, then expect the peer to close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the response ended: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_closed(sock: socket.socket) -> None:
    assert sock.recv(1) == b"", "the node should close the connection"


def raw(node: NodeProcess, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    sock.sendall(request)
    return sock


def hang(node: NodeProcess, count: int) -> list[socket.socket]:
    """Open ``count`` requests that never complete by themselves; wait until each is served."""
    mark = len(node.log)
    sockets = [raw(node, b"GET /edge/hang HTTP/1.1\r\nHost: node\r\n\r\n") for _ in range(count)]
    for _ in range(count):
        mark = node.wait_for_log("hang request started", after=mark) + 1
    return sockets


def assert_clean_log(log: list[str]) -> None:
    for line in log:
        assert "Traceback" not in line, log
        assert " ERROR " not in line and " CRITICAL " not in line, log


def test_invalid_utf8_in_a_json_body_is_400_malformed_json() -> None:
    with edge_node() as node, httpx.Client(base_url=node.url, timeout=10) as client:
        for body in (b'{"text": "\xff"}', b'{"\xc3\x28": "x"}', b'{"text": "\xed\xa0\x80"}'):
            response = client.post("/edge/note", content=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "malformed_json"
            message = response.json()["error"]["message"]
            assert message.startswith(
                "request body is not valid JSON: a string holds invalid UTF-8"
            )
        assert client.post("/edge/note", json={"text": "fine"}).json() == {"text": "fine"}
    assert_clean_log(node.log)


class Said(Message, tag="edge.said", kw_only=True, frozen=True):
    text: str


def test_invalid_utf8_in_a_binary_websocket_frame_is_malformed_frame() -> None:
    decoder: FrameDecoder[Said] = FrameDecoder(Said)
    with pytest.raises(FrameError) as caught:
        decoder.decode(b'{"type": "edge.said", "text": "\xff"}')
    assert caught.value.code == "malformed_frame"
    assert caught.value.message.endswith("a string holds invalid UTF-8 (byte 0xff)")
    assert decoder.decode(b'{"type": "edge.said", "text": "ok"}') == Said(text="ok")


def test_a_request_outliving_the_grace_is_answered_503_and_logged_once() -> None:
    node = edge_node(shutdown_grace_seconds="0.3")
    node.start()
    try:
        (sock,) = hang(node, 1)
        with sock:
            started = time.monotonic()
            node.signal()
            status, headers, body = read_response(sock)
            assert (status, json.loads(body)) == (503, STOPPING)
            assert headers["content-type"] == "application/json"
            assert_closed(sock)
        assert time.monotonic() - started < 5  # the grace (0.3 s), not Hypercorn's backstop
        assert node.wait() == 0
    finally:
        node.stop()
    log = node.log
    node.wait_for_log("shutdown grace of 0.3s expired: cutting 1 in-flight request(s)")
    assert sum("cut GET /edge/hang: answered 503 unavailable" in line for line in log) == 1, log
    assert_clean_log(log)


def test_a_response_outliving_the_grace_mid_stream_is_closed_unfinished() -> None:
    node = edge_node(shutdown_grace_seconds="0.3")
    node.start()
    try:
        with raw(node, b"GET /edge/stream HTTP/1.1\r\nHost: node\r\n\r\n") as sock:
            node.wait_for_log("stream request sent its first chunk")
            node.signal()
            data = b""
            while chunk := sock.recv(65536):  # until the node closes the connection
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
        assert b"transfer-encoding: chunked" in data.lower(), data
        assert b"first\n" in data
        assert not data.endswith(b"0\r\n\r\n"), data  # no final chunk: visibly unfinished
        assert node.wait() == 0
    finally:
        node.stop()
    node.wait_for_log("cut GET /edge/stream mid-response: the connection is closed")
    assert_clean_log(node.log)


def test_a_websocket_outliving_the_grace_is_closed_1001() -> None:
    node = edge_node(shutdown_grace_seconds="0.3")
    node.start()
    try:
        with ws_connect(f"ws://127.0.0.1:{node.port}/edge/ws-hang", open_timeout=10) as ws:
            node.wait_for_log("hang websocket accepted")
            node.signal()
            with pytest.raises(ConnectionClosed) as caught:
                ws.recv(timeout=10)
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1001, "node_stopping")
        assert node.wait() == 0
    finally:
        node.stop()
    node.wait_for_log("cut WEBSOCKET /edge/ws-hang: closed 1001 node_stopping")
    assert_clean_log(node.log)


def test_a_second_sigterm_cuts_in_flight_requests_at_once_and_exits_0() -> None:
    node = edge_node(shutdown_grace_seconds="60")
    node.start()
    try:
        sockets = hang(node, 3)
        node.signal()
        node.wait_for_log("SIGTERM received: draining in-flight requests (up to 60s)")
        started = time.monotonic()
        node.signal()
        for sock in sockets:
            with sock:
                status, _, body = read_response(sock)
                assert (status, json.loads(body)) == (503, STOPPING)
                assert_closed(sock)
        assert node.wait() == 0
        assert time.monotonic() - started < 5  # at once, not after the 60 s grace
    finally:
        node.stop()
    log = node.log
    warnings = [line for line in log if " WARNING " in line and "JWT_SECRET" not in line]
    assert len(warnings) == 1, log
    assert "second SIGTERM received: stopping now; cutting 3 in-flight request(s)" in warnings[0]
    assert sum("cut GET /edge/hang: answered 503" in line for line in log) == 3, log
    node.wait_for_log("node stopped")
    assert_clean_log(log)


def test_a_stalled_request_body_is_answered_408_after_body_timeout_seconds() -> None:
    stalled = b"POST /edge/upload HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\nabc"
    with edge_node(body_timeout_seconds="0.5") as node:
        started = time.monotonic()
        with raw(node, stalled) as sock:
            status, headers, body = read_response(sock)
            elapsed = time.monotonic() - started
            assert_closed(sock)
        assert status == 408
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "error": {
                "code": "request_timeout",
                "message": "the request body did not arrive within 0.5s (body_timeout_seconds)",
            }
        }
        assert 0.4 < elapsed < 5
        # A body that arrives in time is read whole.
        with httpx.Client(base_url=node.url, timeout=10) as client:
            assert client.post("/edge/upload", content=b"x" * 1000).json() == {"bytes": 1000}
    assert_clean_log(node.log)


def test_body_timeout_seconds_defaults_to_10_and_is_bounded() -> None:
    assert load_configuration([], {}).node.body_timeout_seconds == 10.0
    assert (
        load_configuration(["--body-timeout-seconds", "2.5"], {}).node.body_timeout_seconds == 2.5
    )
    for bad in ("0", "0.01", "601", "inf", "nan"):
        with pytest.raises(ConfigError) as caught:
            load_configuration([], {"SWITCHYARD_BODY_TIMEOUT_SECONDS": bad})
        assert "SWITCHYARD_BODY_TIMEOUT_SECONDS" in str(caught.value)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (
            b"POST /edge/upload HTTP/1.1\r\nHost: n\r\n"
            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
            400,
        ),
        (b"POST /edge/upload HTTP/1.1\r\nHost: n\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: n\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
    ids=["request-line", "two-content-lengths", "bad-chunk", "headers-of-70KB"],
)
def test_hypercorns_own_errors_are_empty_and_close_the_connection(
    request_bytes: bytes, status: int
) -> None:
    # Hypercorn answers these before (or instead of) the app: the README documents it.
    with edge_node() as node, raw(node, request_bytes) as sock:
        got, headers, body = read_response(sock)
        assert_closed(sock)
    assert (got, body) == (status, b""), headers
    assert (headers.get("content-length"), headers.get("connection")) == ("0", "close"), headers
    assert "content-type" not in headers  # not the node's JSON: Hypercorn's own answer


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that breaks the contract Quart keeps: no response, or an exception."""
    if scope["type"] == "http" and scope["path"] == "/raise":
        raise RuntimeError("broken outside any handler")


@pytest.mark.parametrize("path", ["/none", "/raise"])
async def test_an_app_ending_without_a_response_gets_json_500_not_hypercorns_empty_one(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Where Hypercorn lets the app decide, the node's wrapper answers in its JSON shape.
    drain = RequestDrain(_bare_app)
    async with (
        serve_app(drain) as url,  # type: ignore[arg-type]
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        response = await client.get(path, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["X-Request-ID"] == "req-1"
    errors = [r for r in caplog.records if r.name == "runtime.http" and r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].getMessage().startswith(f"GET {path} ")


class _PendingRequest:
    """One GET as a server hands it to an app: the request, then a receive that never ends."""

    def __init__(self) -> None:
        self.first = True
        self.sent: list[MutableMapping[str, Any]] = []
        self.received: list[MutableMapping[str, Any]] = []

    async def receive(self) -> MutableMapping[str, Any]:
        if self.first:
            self.first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        """An app waiting for the client, as Quart's reader does while a handler runs."""
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                return


_SCOPE: dict[str, Any] = {"type": "http", "method": "GET", "path": "/wait", "headers": []}


async def test_a_cut_answers_a_pending_receive_with_a_disconnect_then_503() -> None:
    pending = _PendingRequest()
    drain = RequestDrain(pending.app)
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, dict(_SCOPE), pending.receive, pending.send)
        await anyio.wait_all_tasks_blocked()
        assert drain.in_flight == 1
        assert drain.cut() == 1
    assert [m["type"] for m in pending.received] == ["http.request", "http.disconnect"]
    assert pending.sent[0]["status"] == 503
    assert drain.in_flight == 0


@pytest.mark.parametrize("also_cut", [False, True])
async def test_a_cancellation_that_is_not_only_the_cuts_propagates(also_cut: bool) -> None:
    # The server (Hypercorn) or Quart cancels the request's task: a cut at the same
    # moment must not swallow that cancellation.
    pending = _PendingRequest()
    drain = RequestDrain(pending.app)
    task = asyncio.ensure_future(drain(dict(_SCOPE), pending.receive, pending.send))
    await anyio.wait_all_tasks_blocked()
    if also_cut:
        assert drain.cut() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m["type"] for m in pending.received] == ["http.request"]
    assert pending.sent == []
    assert drain.in_flight == 0
