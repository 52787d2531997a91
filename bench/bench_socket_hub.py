"""Socket hub: echo, broadcast latency, flood and memory per connection against named peers.

Every contender is started by the benchmark in the same run, its server(s)
pinned to one core (``taskset``) and the one client process that drives every
connection (``_ws_client.py``, the ``websockets`` client on uvloop) to the
other:

* **Switchyard**: ``python -m runtime`` with its socket hub at ``/ws``, each
  connection authenticated (a JWT per user in ``?token=``), in its personal
  room, with history and statistics on, no Redis;
* **Switchyard, 2 nodes**: two nodes on one ``redis-server`` (started here,
  pinned with the servers), members alternating between them, the sender on
  the first (cross-node rows only);
* **python-socketio**: ``AsyncServer(async_mode="asgi")`` on uvicorn
  (uvloop, httptools, websockets-sansio), driven in its engine.io v4 protocol
  (``_ws_peer_socketio.py``);
* **bare Quart**: Quart on Hypercorn's uvloop worker, a per-connection
  ``asyncio.Queue`` and sender task, JSON encoded once per broadcast
  (``_ws_peer_quart.py``);
* **websockets**: ``websockets.asyncio.server`` and its ``broadcast()`` on
  uvloop (``_ws_peer_websockets.py``).

Rows: echo round trip p50/p99 (one client, sequential pings); broadcast to
``--clients`` members of one room, each message sent 20 ms after the previous
one reached every member, delivery latency p50/p99 from the send to the
receipt at each member (one clock: the sender is a member in the client
process); flood deliveries/s (``--flood`` messages sent back to back, from
the first send to the last receipt); memory per idle connection (the
server's RSS after opening ``--idle`` connections minus before, over the
connections); and the broadcast rows again across two nodes.

Each run gives every contender one turn on fresh servers, in an order rotated
per run; a ratio is Switchyard's figure over the peer's in the same run, and
the table prints medians of ``--runs`` runs and of the per-run ratios::

    python bench/bench_socket_hub.py [--runs 3] [--clients 1000] [--only flood,memory] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from _common import markdown_table, median, progress, rotated, verdict
from _ws_client import Dialect, Job, Result

from runtime.testing import NodeProcess, RedisServer, free_port

HERE = Path(__file__).resolve().parent
SECRET = "bench-socket-hub-" + "s" * 47  # 64 bytes: any HS* algorithm accepts it
ROWS = ("echo", "broadcast", "flood", "memory", "cross-node")
SWITCHYARD, CROSS_NODE = "Switchyard", "Switchyard, 2 nodes + Redis"
SOCKETIO, QUART, WEBSOCKETS = "python-socketio", "bare Quart", "websockets"
PEERS = (SOCKETIO, QUART, WEBSOCKETS)
DELIVERIES_VS_SOCKETIO, DELIVERIES_VS_QUART = 2.0, 1.2
P99_LIMIT_MS, MEMORY_AIM_KIB = 50.0, 30.0


@dataclass(frozen=True)
class Plan:
    """What one benchmark run measures (from the command line)."""

    runs: int
    clients: int
    idle: int
    echo: int
    broadcasts: int
    flood: int
    rows: frozenset[str]
    server_pin: list[str]
    client_pin: list[str]
    server_core: int | None
    pin_note: str

    def hub_env(self) -> dict[str, str]:
        """The node settings: the bench's secret and the limits the flood's sender needs."""
        return {
            "SWITCHYARD_JWT_SECRET": SECRET,
            # One sender sends the whole flood back to back: past the default 50/s, burst 100.
            "SWITCHYARD_HUB_RATE_PER_SECOND": "1000000",
            "SWITCHYARD_HUB_RATE_BURST": "1000000",
            # The flood may wait in a member's outbox at once (with the join's frames).
            "SWITCHYARD_HUB_OUTBOX_SIZE": str(max(1024, self.flood + 256)),
        }


@dataclass
class Contender:
    """One stack under test and what each run measured of it."""

    name: str
    results: list[Result | None] = field(default_factory=list)


# -- servers ----------------------------------------------------------------------------------


def cores() -> tuple[list[str], list[str], int | None, str]:
    """``taskset`` prefixes for the servers and for the client, the server core, and a note."""
    available = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(available) < 2:
        return [], [], None, "not pinned (needs taskset and 2 cores): servers and client share"
    server, client = available[0], available[1]
    note = f"servers pinned to core {server}, the client process to core {client} (taskset)"
    return ["taskset", "-c", str(server)], ["taskset", "-c", str(client)], server, note


def wait_ready(url: str, timeout_seconds: float = 30.0) -> None:
    """Poll ``GET url`` until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"status {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout_seconds:g}s: {last}")


@contextmanager
def started(process: NodeProcess) -> Iterator[NodeProcess]:
    """Start a server process; stop it on the way out."""
    process.start(ready_timeout_seconds=30)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def switchyard(plan: Plan, nodes: int) -> Iterator[tuple[list[str], list[int]]]:
    """``nodes`` Switchyard nodes (on one redis-server when more than one): urls and pids."""
    with ExitStack() as stack:
        env = plan.hub_env()
        if nodes > 1:
            redis = stack.enter_context(RedisServer())
            if plan.server_core is not None and redis.pid is not None:
                os.sched_setaffinity(redis.pid, {plan.server_core})
            env["SWITCHYARD_REDIS_URL"] = redis.url
        command = [*plan.server_pin, sys.executable, "-m", "runtime"]
        processes = [
            stack.enter_context(started(NodeProcess(env, command=command))) for _ in range(nodes)
        ]
        for process in processes:
            wait_ready(f"{process.url}/readyz")
        yield [f"ws://127.0.0.1:{p.port}/ws" for p in processes], [p.pid for p in processes]


@contextmanager
def peer(plan: Plan, name: str) -> Iterator[tuple[list[str], list[int]]]:
    """One peer server: its WebSocket url and pid."""
    port = free_port()
    python = [*plan.server_pin, sys.executable]
    if name == SOCKETIO:
        command = [*python, str(HERE / "_ws_peer_socketio.py"), str(port)]
        url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
        ready = "peer listening on"
    elif name == QUART:
        command = [*python, "-m", "hypercorn", "--worker-class", "uvloop", "--workers", "0"]
        command += ["--bind", f"127.0.0.1:{port}", "_ws_peer_quart:quart_app()"]
        url = f"ws://127.0.0.1:{port}/ws"
        ready = "Running on"
    else:
        command = [*python, str(HERE / "_ws_peer_websockets.py"), str(port)]
        url = f"ws://127.0.0.1:{port}/"
        ready = "peer listening on"
    process = NodeProcess(command=command, port=port, cwd=str(HERE), ready_line=ready)
    with started(process):
        yield [url], [process.pid]


# -- one turn ---------------------------------------------------------------------------------


def job_for(plan: Plan, name: str, urls: list[str], pids: list[int]) -> Job:
    """The client's job for one contender's turn: the phases the selected rows need."""
    rows = plan.rows
    dialect: Dialect = "switchyard" if name in (SWITCHYARD, CROSS_NODE) else "plain"
    if name == SOCKETIO:
        dialect = "socketio"
    room_rows = {"broadcast", "cross-node"} if name != CROSS_NODE else {"cross-node"}
    flood_rows = {"flood", "cross-node"} if name != CROSS_NODE else {"cross-node"}
    single = name != CROSS_NODE
    return Job(
        dialect=dialect,
        urls=urls,
        secret=SECRET if dialect == "switchyard" else None,
        server_pids=pids,
        idle=plan.idle if single and "memory" in rows else 0,
        echo=plan.echo if single and "echo" in rows else 0,
        clients=plan.clients,
        broadcasts=plan.broadcasts if rows & room_rows else 0,
        flood=plan.flood if rows & flood_rows else 0,
        timeout_seconds=60.0,
    )


def turn(plan: Plan, name: str) -> Result | None:
    """One contender's turn; ``None`` (and the reason on stderr) when it could not run."""
    try:
        return _turn(plan, name)
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        progress(f"{name}: the turn failed: {type(exc).__name__}: {exc}")
        return None


def _turn(plan: Plan, name: str) -> Result | None:
    """Start the contender's servers, run the client against them, stop them."""
    if name == SWITCHYARD:
        servers = switchyard(plan, 1)
    elif name == CROSS_NODE:
        servers = switchyard(plan, 2)
    else:
        servers = peer(plan, name)
    with servers as (urls, pids):
        job = job_for(plan, name, urls, pids)
        done = subprocess.run(
            [*plan.client_pin, sys.executable, str(HERE / "_ws_client.py")],
            input=msgspec.json.encode(job),
            capture_output=True,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        progress(f"{name}: the client failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
        return None
    result = msgspec.json.decode(done.stdout, type=Result)
    for error in result.errors:
        progress(f"{name}: {error}")
    return result


def hub_installed() -> bool:
    """Whether ``python -m runtime`` has the socket hub (its settings section is listed)."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--help"], capture_output=True, text=True, check=False
    )
    return "SWITCHYARD_HUB_RATE_BURST" in done.stdout


def contenders_for(plan: Plan) -> list[Contender]:
    names = [SWITCHYARD, *PEERS]
    if "cross-node" in plan.rows:
        names.append(CROSS_NODE)
    if not hub_installed():
        progress("the node has no socket hub yet (no SWITCHYARD_HUB_* settings): peers only")
        names = [name for name in names if name not in (SWITCHYARD, CROSS_NODE)]
    return [Contender(name) for name in names]


def measure(plan: Plan) -> list[Contender]:
    contenders = contenders_for(plan)
    for run in range(plan.runs):
        for contender in rotated(contenders, run):
            started_at = time.perf_counter()
            result = turn(plan, contender.name)
            contender.results.append(result)
            progress(
                f"run {run + 1}/{plan.runs} {contender.name}: "
                f"{summary(result)} ({time.perf_counter() - started_at:.0f}s)"
            )
    return contenders


# -- figures ----------------------------------------------------------------------------------


def memory_kib(result: Result) -> float | None:
    """Server RSS delta per idle connection, in KiB."""
    if result.rss_after_kib is None or result.rss_before_kib is None:
        return None
    if not result.idle_connections:
        return None
    return (result.rss_after_kib - result.rss_before_kib) / result.idle_connections


@dataclass(frozen=True)
class Measure:
    """One row of the table: a figure read from a result, and which way is better."""

    row: str  # the --only name that selects it
    label: str
    unit: str
    read: Callable[[Result], float | None]
    higher_is_better: bool = False
    cross_node: bool = False


MEASURES = (
    Measure("echo", "echo round trip p50", "ms", lambda r: r.echo_p50_ms),
    Measure("echo", "echo round trip p99", "ms", lambda r: r.echo_p99_ms),
    Measure("broadcast", "broadcast delivery p50", "ms", lambda r: r.broadcast_p50_ms),
    Measure("broadcast", "broadcast delivery p99", "ms", lambda r: r.broadcast_p99_ms),
    Measure("flood", "flood", "deliveries/s", lambda r: r.flood_deliveries_per_second, True),
    Measure("memory", "memory per idle connection", "KiB", memory_kib),
    Measure(
        "cross-node", "broadcast delivery p50", "ms", lambda r: r.broadcast_p50_ms, False, True
    ),
    Measure(
        "cross-node", "broadcast delivery p99", "ms", lambda r: r.broadcast_p99_ms, False, True
    ),
    Measure(
        "cross-node", "flood", "deliveries/s", lambda r: r.flood_deliveries_per_second, True, True
    ),
)


def summary(result: Result | None) -> str:
    if result is None:
        return "failed"
    parts = []
    if result.echo_p99_ms is not None:
        parts.append(f"echo p50/p99 {result.echo_p50_ms:.2f}/{result.echo_p99_ms:.2f} ms")
    if result.broadcast_p99_ms is not None:
        parts.append(
            f"broadcast p50/p99 {result.broadcast_p50_ms:.1f}/{result.broadcast_p99_ms:.1f} ms"
        )
    if result.flood_deliveries_per_second is not None:
        parts.append(f"flood {result.flood_deliveries_per_second:,.0f}/s")
    if (kib := memory_kib(result)) is not None:
        parts.append(f"{kib:.1f} KiB/idle connection")
    if result.errors:
        parts.append(f"{len(result.errors)} error(s)")
    return ", ".join(parts) or "nothing measured"


def values(contender: Contender, measure: Measure) -> list[float | None]:
    return [None if r is None else measure.read(r) for r in contender.results]


def ratios(mine: list[float | None], theirs: list[float | None]) -> list[float]:
    """Per-run ratios of two contenders' figures (runs where either is missing left out)."""
    if not mine or not theirs:
        return []
    return [a / b for a, b in zip(mine, theirs, strict=True) if a is not None and b]


def cell(samples: list[float | None], unit: str) -> str:
    present = [v for v in samples if v is not None]
    if not present:
        return "n/a"
    value = median(present)
    return (
        f"{value:,.0f}"
        if unit == "deliveries/s"
        else f"{value:,.2f}"
        if value < 10
        else f"{value:,.1f}"
    )


def ratio_cell(found: list[float]) -> str:
    if not found:
        return "n/a"
    return f"{median(found):.2f}x ({', '.join(f'{r:.2f}' for r in found)})"


def target_of(measure: Measure, by_name: dict[str, Contender]) -> tuple[str, str]:
    """The target of a row and its verdict (or empty strings)."""
    name = CROSS_NODE if measure.cross_node else SWITCHYARD
    mine = values(by_name[name], measure) if name in by_name else []
    if measure.label == "flood" and not measure.cross_node:
        vs_sio = ratios(mine, values(by_name[SOCKETIO], measure)) if SOCKETIO in by_name else []
        vs_quart = ratios(mine, values(by_name[QUART], measure)) if QUART in by_name else []
        ok = bool(vs_sio and vs_quart) and (
            median(vs_sio) >= DELIVERIES_VS_SOCKETIO and median(vs_quart) >= DELIVERIES_VS_QUART
        )
        target = f">= {DELIVERIES_VS_SOCKETIO:g}x python-socketio, "
        target += f">= {DELIVERIES_VS_QUART:g}x bare Quart"
        return target, verdict(ok)
    present = [v for v in mine if v is not None]
    if measure.label == "broadcast delivery p99" and not measure.cross_node:
        return f"< {P99_LIMIT_MS:g} ms", verdict(bool(present) and median(present) < P99_LIMIT_MS)
    if measure.row == "memory":
        theirs = values(by_name[QUART], measure) if QUART in by_name else []
        vs_quart = ratios(mine, theirs)
        ok = bool(vs_quart) and median(vs_quart) <= 1.0
        aim = bool(present) and median(present) <= MEMORY_AIM_KIB
        return f"<= bare Quart (aim <= {MEMORY_AIM_KIB:g} KiB)", (
            f"{verdict(ok)}; aim {'met' if aim else 'not met'}"
        )
    return "", ""


def report(plan: Plan, contenders: list[Contender], seconds: float) -> str:
    by_name = {c.name: c for c in contenders}
    peers = [name for name in PEERS if name in by_name]
    header = ["Measure", "Switchyard", *peers, "vs python-socketio", "vs bare Quart", "target", ""]
    body = []
    for measure in MEASURES:
        if measure.row not in plan.rows:
            continue
        name = CROSS_NODE if measure.cross_node else SWITCHYARD
        mine = values(by_name[name], measure) if name in by_name else []
        label = f"{measure.label} ({measure.unit})"
        if measure.cross_node:
            label += ", 2 nodes + Redis"
        row = [label, cell(mine, measure.unit)]
        row += [cell(values(by_name[p], measure), measure.unit) for p in peers]
        for baseline in (SOCKETIO, QUART):
            found = ratios(mine, values(by_name[baseline], measure)) if baseline in by_name else []
            row.append(ratio_cell(found))
        row += list(target_of(measure, by_name))
        body.append(row)
    table = markdown_table(header, body, "l" + "r" * (len(peers) + 3) + "ll")
    errors = [
        f"- {c.name}, run {i + 1}: {error}"
        for c in contenders
        for i, result in enumerate(c.results)
        for error in (["the turn failed (see stderr)"] if result is None else result.errors)
    ]
    errors += [
        f"- {c.name}, run {i + 1}: {result.binary_frames:,} frames arrived as binary frames "
        "(the protocol says JSON text frames; the client read them all the same)"
        for c in contenders
        for i, result in enumerate(c.results)
        if result is not None and result.binary_frames
    ]
    setup = [
        f"- {plan.runs} run(s); each contender one turn per run on fresh servers, order rotated; "
        f"{plan.pin_note}; one client process (websockets {_version('websockets')} client on "
        "uvloop, compression off, one receiving task per connection)",
        f"- echo: {plan.echo} sequential round trips on one connection after 200 unmeasured; "
        f"broadcast: {plan.broadcasts} messages to {plan.clients} members of one room (the sender "
        "one of them), each sent 20 ms after the previous one reached every member; flood: "
        f"{plan.flood} messages back to back to the same {plan.clients} members; memory: "
        f"{plan.idle} idle connections opened at once (64 handshakes in flight), server RSS "
        "(VmRSS) after minus before, over the connections, once the server is idle",
        "- Switchyard: `python -m runtime`, every connection with its own user's HS256 JWT in "
        "`?token=` and in its personal room, room history in memory (Redis for the 2 nodes); "
        "settings "
        + ", ".join(f"{k}={v}" for k, v in plan.hub_env().items() if "HUB" in k)
        + " (the flood's one sender would hit the default rate limit of 50/s, burst 100)",
        f"- python-socketio {_version('python-socketio')} (python-engineio "
        f"{_version('python-engineio')}) on uvicorn {_version('uvicorn')} (uvloop, httptools, "
        "websockets-sansio), `async_handlers=False`; the client speaks engine.io v4 / "
        "Socket.IO v5 text packets over the same websockets client (python-socketio's "
        "AsyncClient needs aiohttp and would make the client the bottleneck); echo is an event "
        "with an ack",
        f"- bare Quart {_version('quart')} on Hypercorn {_version('hypercorn')} (uvloop worker): "
        "asyncio.Queue + sender task per connection, json.dumps once per broadcast; websockets: "
        "`websockets.asyncio.server.broadcast()` on uvloop; neither authenticates",
        f"- Ratios: Switchyard's figure over the peer's in the same run, median of the per-run "
        f"ratios (per run in brackets); higher is better for deliveries/s, lower for ms and KiB. "
        f"The cross-node rows compare the 2-node figures with the single-process peers. "
        f"Took {seconds:.0f}s.",
    ]
    parts = ["## Socket hub: Switchyard against python-socketio, bare Quart and websockets", table]
    if errors:
        parts.append("Errors and warnings:\n" + "\n".join(errors))
    parts.append("\n".join(machine_lines() + setup))
    return "\n\n".join(parts)


def machine_lines() -> list[str]:
    """The machine note: cores, load, Python, the loop and the libraries every contender shares."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    shared = ", ".join(f"{name} {_version(name)}" for name in ("uvloop", "msgspec", "redis"))
    return [
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
        f"{platform.release()}; load average at the end {load} (shared machine: other jobs ran)",
        f"- {platform.python_implementation()} {platform.python_version()}; every server and "
        f"the client on uvloop; {shared}",
    ]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def raise_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit (the servers inherit it) to fit ``needed`` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < needed:
            progress(f"open-files hard limit {hard} is below the {needed} needed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; quick: 1)")
    parser.add_argument(
        "--clients", type=int, default=None, help="members of the room (default 1000; quick: 200)"
    )
    parser.add_argument(
        "--idle", type=int, default=None, help="idle connections (default 5000; quick: 1000)"
    )
    parser.add_argument(
        "--only",
        default=",".join(ROWS),
        help=f"comma-separated rows among {', '.join(ROWS)} (default all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 1 run, fewer clients and messages"
    )
    args = parser.parse_args()
    rows = frozenset(part.strip() for part in args.only.split(",") if part.strip())
    if unknown := rows - set(ROWS):
        parser.error(f"unknown rows {sorted(unknown)}; choose among {', '.join(ROWS)}")
    quick = args.quick
    server_pin, client_pin, server_core, pin_note = cores()
    plan = Plan(
        runs=args.runs or (1 if quick else 3),
        clients=args.clients or (200 if quick else 1000),
        idle=args.idle or (1000 if quick else 5000),
        echo=500 if quick else 2000,
        broadcasts=20 if quick else 50,
        flood=50 if quick else 100,
        rows=rows,
        server_pin=server_pin,
        client_pin=client_pin,
        server_core=server_core,
        pin_note=pin_note,
    )
    if min(plan.runs, plan.clients, plan.idle) < 1:
        parser.error("--runs, --clients and --idle are >= 1")
    raise_fd_limit(max(plan.idle, plan.clients) * 2 + 1024)
    started_at = time.perf_counter()
    contenders = measure(plan)
    print(report(plan, contenders, time.perf_counter() - started_at))
    progress(f"done in {time.perf_counter() - started_at:.0f}s")


if __name__ == "__main__":
    main()
