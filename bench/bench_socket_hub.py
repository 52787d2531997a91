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

Each run starts every contender's servers afresh, then runs each phase
(memory, echo, room) for every contender in turn, in an order rotated per
run, so the figures a ratio pairs were measured close together; a ratio is
Switchyard's figure over the peer's in the same run, and the table prints
medians of ``--runs`` runs and of the per-run ratios::

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
from contextlib import AbstractContextManager, ExitStack, contextmanager
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


PHASES = ("idle", "echo", "room")


def job_for(plan: Plan, name: str, urls: list[str], pids: list[int], phase: str) -> Job | None:
    """The client's job for one phase of one contender; ``None`` when no selected row needs it."""
    rows = plan.rows
    dialect: Dialect = "switchyard" if name in (SWITCHYARD, CROSS_NODE) else "plain"
    if name == SOCKETIO:
        dialect = "socketio"
    job = Job(
        dialect=dialect,
        urls=urls,
        secret=SECRET if dialect == "switchyard" else None,
        server_pids=pids,
        timeout_seconds=60.0,
    )
    cross = name == CROSS_NODE
    if phase == "idle" and not cross and "memory" in rows:
        return msgspec.structs.replace(job, idle=plan.idle)
    if phase == "echo" and not cross and "echo" in rows:
        return msgspec.structs.replace(job, echo=plan.echo)
    if phase == "room":
        # The peers' and the single node's figures are the cross-node rows' baselines too.
        wanted = {"cross-node"} if cross else {"broadcast", "flood", "cross-node"}
        if rows & wanted:
            broadcast = bool(rows & ({"cross-node"} if cross else {"broadcast", "cross-node"}))
            flood = bool(rows & ({"cross-node"} if cross else {"flood", "cross-node"}))
            return msgspec.structs.replace(
                job,
                clients=plan.clients,
                broadcasts=plan.broadcasts if broadcast else 0,
                flood=plan.flood if flood else 0,
            )
    return None


def servers_for(plan: Plan, name: str) -> AbstractContextManager[tuple[list[str], list[int]]]:
    """The contender's server(s): their WebSocket urls and pids while the block runs."""
    if name == SWITCHYARD:
        return switchyard(plan, 1)
    if name == CROSS_NODE:
        return switchyard(plan, 2)
    return peer(plan, name)


def run_client(plan: Plan, name: str, job: Job) -> Result | None:
    """Run one client process for ``job``; ``None`` (and the reason on stderr) if it failed."""
    try:
        done = subprocess.run(
            [*plan.client_pin, sys.executable, str(HERE / "_ws_client.py")],
            input=msgspec.json.encode(job),
            capture_output=True,
            timeout=600,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        progress(f"{name}: the client overran: {exc}")
        return None
    if done.returncode != 0:
        progress(f"{name}: the client failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
        return None
    result = msgspec.json.decode(done.stdout, type=Result)
    for error in result.errors:
        progress(f"{name}: {error}")
    return result


def merged(into: Result | None, part: Result | None) -> Result | None:
    """``into`` with the figures ``part`` measured (phases fill disjoint fields)."""
    if into is None or part is None:
        return None
    default = Result()
    changes: dict[str, object] = {}
    for name in Result.__struct_fields__:
        value = getattr(part, name)
        if name == "errors":
            changes[name] = [*into.errors, *part.errors]
        elif name == "binary_frames":
            changes[name] = into.binary_frames + part.binary_frames
        elif value != getattr(default, name):
            changes[name] = value
    return msgspec.structs.replace(into, **changes)


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
    """Each run: every contender's servers fresh, then each phase for every contender in turn.

    Phases are interleaved (all contenders' memory, then all echoes, then all
    rooms), in an order rotated per run, so the pairs a ratio compares ran
    close together in time; idle servers wait meanwhile.
    """
    contenders = contenders_for(plan)
    for run in range(plan.runs):
        order = rotated(contenders, run)
        results: dict[str, Result | None] = {}
        with ExitStack() as stack:
            servers: dict[str, tuple[list[str], list[int]]] = {}
            for contender in order:
                try:
                    servers[contender.name] = stack.enter_context(servers_for(plan, contender.name))
                    results[contender.name] = Result()
                except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                    progress(f"{contender.name}: its servers did not start: {exc}")
                    results[contender.name] = None
            for phase in PHASES:
                for contender in order:
                    name = contender.name
                    if name not in servers or results[name] is None:
                        continue
                    urls, pids = servers[name]
                    job = job_for(plan, name, urls, pids, phase)
                    if job is None:
                        continue
                    started_at = time.perf_counter()
                    part = run_client(plan, name, job)
                    results[name] = merged(results[name], part)
                    progress(
                        f"run {run + 1}/{plan.runs} {phase} {name}: {summary(part)} "
                        f"({time.perf_counter() - started_at:.0f}s)"
                    )
        for contender in contenders:
            contender.results.append(results.get(contender.name))
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
    Measure("memory", "opening the idle connections", "s", lambda r: r.idle_connect_seconds),
    Measure("broadcast", "room ready (members joined, reached)", "s", lambda r: r.ready_seconds),
    Measure(
        "cross-node", "broadcast delivery p50", "ms", lambda r: r.broadcast_p50_ms, False, True
    ),
    Measure(
        "cross-node", "broadcast delivery p99", "ms", lambda r: r.broadcast_p99_ms, False, True
    ),
    Measure(
        "cross-node", "flood", "deliveries/s", lambda r: r.flood_deliveries_per_second, True, True
    ),
    Measure(
        "cross-node",
        "room ready (members joined, reached)",
        "s",
        lambda r: r.ready_seconds,
        False,
        True,
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
    if result.ready_seconds is not None:
        parts.append(f"room ready in {result.ready_seconds:.1f}s")
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
    if measure.label == "memory per idle connection":
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
        f"- {plan.runs} run(s), each on fresh servers (all contenders' started together, idle "
        "while another is measured), phases interleaved: every contender's memory, then echo, "
        "then room, in an order rotated per run; "
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
