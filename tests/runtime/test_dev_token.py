"""``python -m runtime`` without a JWT key: a generated secret, a warning, a ready dev token."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from runtime.testing import free_port

pytestmark = pytest.mark.e2e

ROOT = str(Path(__file__).resolve().parents[2])


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_a_node_without_a_key_prints_a_dev_token_that_works_over_http_and_websocket() -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    environ |= {"SWITCHYARD_HOST": "127.0.0.1", "SWITCHYARD_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime"],
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    readers = [
        threading.Thread(target=_lines, args=(process.stdout, out), daemon=True),
        threading.Thread(target=_lines, args=(process.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        printed: list[str] = []
        while not any("WebSocket: ws://" in line for line in printed):
            printed.append(out.get(timeout=20))
        token = printed[printed.index(next(p for p in printed if "dev token" in p)) + 1].strip()
        url = next(p for p in printed if "WebSocket: " in p).split("WebSocket: ")[1].strip()
        assert url == f"ws://127.0.0.1:{port}/ws?token={token}"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            stats = client.get("/api/statistics", headers={"Authorization": f"Bearer {token}"})
            assert stats.status_code == 200, stats.text
        with connect(url) as socket:
            welcome = json.loads(socket.recv(timeout=10))
            assert welcome["type"] == "welcome" and welcome["user_id"] == "dev"
            assert welcome["room"] == "user:dev"
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=20)
        for reader in readers:
            reader.join(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert status == 0
    log = []
    while not err.empty():
        log.append(err.get())
    warning = [line for line in log if "DEVELOPMENT ONLY" in line]
    assert len(warning) == 1 and " WARNING " in warning[0]
    assert all(token not in line for line in log)  # the token is printed, never logged
