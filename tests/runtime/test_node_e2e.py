"""A real ``python -m runtime`` in a subprocess: boot, health, drain, escalation, Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from runtime.testing import NodeProcess, RedisServer, free_port

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])
APP = ["--app", "tests.apps.e2e_app:setup"]


def test_node_serves_health_and_the_users_actors_then_drains_on_sigterm() -> None:
    node = NodeProcess(args=APP, cwd=ROOT)
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=10) as client:
            assert client.get("/healthz").json() == {"status": "ok"}
            ready = client.get("/readyz")
            assert ready.status_code == 200
            actors = {
                "cache": "running",
                "socket_hub": "running",
                "queue": "running",
                "echo": "running",
            }
            assert ready.json()["actors"] == actors
            assert client.get("/echo/hello").json() == {"echo": "hello"}

            outcome: dict[str, httpx.Response] = {}

            def slow_request() -> None:
                outcome["response"] = client.get("/slow")

            in_flight = threading.Thread(target=slow_request)
            in_flight.start()
            node.wait_for_log("slow request started")
            node.signal()
            in_flight.join(timeout=20)
        assert outcome["response"].status_code == 200
        assert outcome["response"].json() == {"drained": True}
        assert node.wait() == 0
    finally:
        node.stop()
    log = node.log
    assert sum("node listening on" in line for line in log) == 1, log
    assert not any("Running on" in line for line in log), log  # Hypercorn's own, dropped
    order = [
        node.wait_for_log("SIGTERM received: draining in-flight requests"),
        node.wait_for_log("HTTP drained; stopping actors"),
        node.wait_for_log("echo actor stopped"),
        node.wait_for_log("node stopped"),
    ]
    assert order == sorted(order), log


def test_a_websocket_session_is_served_then_closed_1001_when_the_node_drains() -> None:
    node = NodeProcess(args=APP, cwd=ROOT)
    node.start()
    try:
        with ws_connect(f"ws{node.url.removeprefix('http')}/ws/echo", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "e2e.socket_echo", "text": "hi"}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "echoed", "text": "hi"}
            ws.send("not json")
            assert json.loads(ws.recv(timeout=10))["code"] == "malformed_frame"
            node.signal()
            with pytest.raises(ConnectionClosed) as caught:
                ws.recv(timeout=10)
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1001, "node_stopping")
        assert node.wait() == 0
    finally:
        node.stop()
    node.wait_for_log("websocket session closed with 1001")


def test_escalation_past_the_restart_intensity_exits_non_zero() -> None:
    node = NodeProcess(args=APP, cwd=ROOT)
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=10) as client:
            for attempt in range(4):
                client.post("/explode")
                if attempt < 3:
                    node.wait_for_log("echo actor started", after=len(node.log) - 1)
        assert node.wait() == 1
    finally:
        node.stop()
    node.wait_for_log("node stopped: supervisor 'root' gave up: child 'echo' needed more than 3")


def test_failing_first_start_fails_the_boot_with_a_clear_error() -> None:
    node = NodeProcess(args=["--app", "tests.apps.e2e_app:failing_setup"], cwd=ROOT)
    node.start(wait_ready=False)
    assert node.wait() == 1
    node.wait_for_log("node failed to boot: cannot reach the database")


def run_runtime(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m runtime`` with only ``env`` (and a PATH) as its environment, to completion."""
    return subprocess.run(
        [sys.executable, "-m", "runtime"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    result = run_runtime({"SWITCHYARD_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m runtime: configuration error: "
        "SWITCHYARD_PORT has value 'eighty'; expected an integer"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "lots"},
            "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value 'lots'; expected an integer",
        ),
        (
            {"SWITCHYARD_CACHE_PREFIX": "a", "SWITCHYARD_REDIS_PREFIX": "b"},
            "SWITCHYARD_CACHE_PREFIX has value 'a'; it is a deprecated alias of "
            "SWITCHYARD_REDIS_PREFIX, which has value 'b'; set SWITCHYARD_REDIS_PREFIX alone",
        ),
    ],
)
def test_bad_section_value_exits_2_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    result = run_runtime(environ)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"python -m runtime: configuration error: {message}"


def test_unknown_variable_exits_2_once_the_node_is_assembled() -> None:
    result = run_runtime({"SWITCHYARD_PROTT": "8000"})
    assert result.returncode == 2, result.stderr
    assert (
        "configuration error: SWITCHYARD_PROTT has value '8000'; unknown setting; "
        "did you mean SWITCHYARD_PORT?"
    ) in result.stderr
    assert "node listening" not in result.stderr


def test_help_documents_every_setting() -> None:
    from actors.cache import CacheSettings
    from runtime import Settings

    result = subprocess.run(
        [sys.executable, "-m", "runtime", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    for field in Settings.__struct_fields__:
        assert f"SWITCHYARD_{field.upper()}" in result.stdout
    assert "\nCache:\n" in result.stdout
    for field in CacheSettings.__struct_fields__:
        assert f"SWITCHYARD_CACHE_{field.upper()}" in result.stdout


@pytest.mark.redis
def test_redis_absent_at_boot_then_up_then_killed_then_back() -> None:
    redis = RedisServer(port=free_port())  # not started: the node boots with Redis absent
    node = NodeProcess(
        {
            "SWITCHYARD_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "SWITCHYARD_REDIS_HEALTH_INTERVAL_SECONDS": "0.05",
            "SWITCHYARD_REDIS_RECONNECT_MAX_SECONDS": "0.2",
        },
        cwd=ROOT,
    )
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=10) as client:
            node.wait_for_log("is unavailable")
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.json()["reasons"][0].startswith("redis is down: ")

            redis.start()
            node.wait_for_log(" is up")
            assert client.get("/readyz").status_code == 200

            mark = len(node.log)
            redis.stop()
            node.wait_for_log(" is down", after=mark)
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200  # alive all along

            redis.restart()
            node.wait_for_log("is up again (reconnect 1)", after=mark)
            ready = client.get("/readyz").json()
            assert ready["status"] == "ready"
            assert ready["redis"]["reconnects"] == 1
        assert node.stop() == 0
    finally:
        node.stop()
        redis.stop()
