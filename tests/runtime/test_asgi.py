"""``hypercorn 'runtime.asgi:create_app()'``: a full node under the user's own Hypercorn."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from runtime import ConfigError, Secret, SystemClock, TokenVerifier
from runtime.asgi import NodeApp, create_app
from runtime.testing import NodeProcess, free_port

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])
SECRET = "a-test-secret-that-is-32-bytes-long!"


def _hypercorn(port: int, env: dict[str, str]) -> NodeProcess:
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "runtime.asgi:create_app()",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "2",
    ]
    return NodeProcess(
        env,
        cwd=ROOT,
        port=port,
        command=command,
        ready_line="node started under an ASGI server",
    )


def test_create_app_reads_the_environment_and_refuses_bad_values() -> None:
    app = create_app({"SWITCHYARD_JWT_SECRET": SECRET, "SWITCHYARD_ASK_TIMEOUT_SECONDS": "2"})
    assert isinstance(app, NodeApp)
    assert app.settings.ask_timeout_seconds == 2.0
    with pytest.raises(ConfigError, match="SWITCHYARD_ASK_TIMEOUT_SECONDS"):
        create_app({"SWITCHYARD_ASK_TIMEOUT_SECONDS": "soon"})


def test_hypercorn_serves_a_full_node_and_stops_it_on_sigterm() -> None:
    port = free_port()
    node = _hypercorn(port, {"SWITCHYARD_JWT_SECRET": SECRET})
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["actors"] == {
                "cache": "running",
                "socket_hub": "running",
                "queue": "running",
            }
            denied = client.put("/api/cache/greeting", content=b"hi")
            assert denied.status_code == 401
            assert denied.json()["error"]["code"] == "missing_token"
            token = TokenVerifier(Secret(SECRET), clock=SystemClock()).issue(
                "ops", roles=("admin",)
            )
            admin = {"Authorization": f"Bearer {token}"}
            assert client.put("/api/cache/greeting", content=b"hi", headers=admin).is_success
            assert client.get("/api/cache/greeting", headers=admin).content == b"hi"
        node.signal()
        assert node.wait() == 0
    finally:
        node.stop()
    stopped = node.wait_for_log("node stopped")
    assert stopped > node.wait_for_log("node started under an ASGI server")
