"""The client process of ``bench_socket_hub.py``: one process driving every connection.

It reads one :class:`Job` (JSON) from stdin, runs its phases against one
contender and writes one :class:`Result` (JSON) to stdout. Every contender is
driven with the ``websockets`` client (asyncio implementation, on uvloop),
compression off, client keep-alive pings off, one receiving task per
connection; the contenders differ only in their dialect:

* ``switchyard``: the hub's frames; the token in ``?token=``; ``welcome`` ends
  the handshake; ``join_room`` is answered by ``room_joined`` with its ``ref``;
* ``plain``: the same frames without a token or a ``welcome`` (the bare Quart
  and ``websockets`` peers);
* ``socketio``: python-socketio's wire protocol spoken directly over the
  WebSocket (engine.io v4 text packets, ``?EIO=4&transport=websocket``):
  ``0{...}`` open, ``40`` connect, ``42["event",data]`` events, ``42<id>[...]``
  with its ack ``43<id>[...]``, and the server's ``2`` pings answered with
  ``3``. python-socketio's own ``AsyncClient`` needs aiohttp and spends more
  per frame than the server under test; speaking the protocol over the same
  ``websockets`` client keeps the client's cost equal for every contender.

Phases, each optional, in this order: ``idle`` (memory per idle connection:
the servers' RSS before and after opening that many connections), ``echo``
(sequential round trips on one connection), ``broadcast`` (``clients``
members; one of them sends a message carrying its send time, the next one
``interval_ms`` after the previous reached every member; each receiver
records receipt minus send time) and ``flood`` (the
sender sends ``flood`` messages back to back; deliveries per second from the
first send to the last receipt). Latencies use one clock: the sender and the
receivers live in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import msgspec
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runtime import SystemClock, TokenVerifier

__all__ = ["Dialect", "Job", "Result", "main", "run"]

Dialect = Literal["switchyard", "plain", "socketio"]

ROOM = "public:bench"
CONNECT_CONCURRENCY = 64  # handshakes in flight at once
_perf = time.perf_counter


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """What the client process does (see the module docstring)."""

    dialect: Dialect
    urls: list[str]  # connection i goes to urls[i % len(urls)]; the sender to urls[0]
    secret: str | None = None  # switchyard: the HS256 secret to mint tokens with
    connections_per_user: int = 1  # switchyard: consecutive connections share a user
    server_pids: list[int] = []
    idle: int = 0
    echo: int = 0
    echo_warmup: int = 200
    clients: int = 0
    broadcasts: int = 0
    interval_ms: float = 20.0
    flood: int = 0
    timeout_seconds: float = 60.0


class Result(msgspec.Struct, kw_only=True):
    """What one job measured (``None`` for a phase it did not run)."""

    idle_connections: int = 0
    rss_before_kib: float | None = None
    rss_after_kib: float | None = None
    idle_connect_seconds: float | None = None
    echo_p50_ms: float | None = None
    echo_p99_ms: float | None = None
    connect_seconds: float | None = None  # until every member's join was answered
    ready_seconds: float | None = None  # until a first broadcast reached every member
    broadcast_p50_ms: float | None = None
    broadcast_p99_ms: float | None = None
    broadcast_max_ms: float | None = None
    broadcast_deliveries: int = 0
    broadcast_expected: int = 0
    flood_deliveries_per_second: float | None = None
    flood_deliveries: int = 0
    flood_expected: int = 0
    flood_seconds: float | None = None
    binary_frames: int = 0  # frames the server sent as binary (the protocols say text)
    errors: list[str] = []


class _Frame(msgspec.Struct):
    """The fields the client reads from a frame (all others are ignored)."""

    type: str = ""
    message: str | None = None
    ref: int | str | None = None


_decode_frame = msgspec.json.Decoder(_Frame).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.encode


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def rss_kib(pids: list[int]) -> float:
    """The summed resident set size of ``pids``, in KiB (``/proc/<pid>/status``)."""
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += float(line.split()[1])
    return total


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) ``pids`` have used so far."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def settle(pids: list[int], *, limit_seconds: float = 15.0) -> None:
    """Wait until the servers are idle: under 2% of a core over 0.25 s (bounded)."""
    if not pids:
        return
    deadline = _perf() + limit_seconds
    before = cpu_seconds(pids)
    while _perf() < deadline:
        await asyncio.sleep(0.25)
        after = cpu_seconds(pids)
        if after - before < 0.005:
            return
        before = after


def raise_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit to fit ``needed`` descriptors (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < want:
            raise RuntimeError(f"open-files hard limit {hard} is below the {want} needed")


# -- one connection -------------------------------------------------------------------------


class Peer:
    """One client connection and what its receiving task counts."""

    __slots__ = ("index", "joined", "received", "synced", "ws")

    def __init__(self, index: int, ws: ClientConnection) -> None:
        self.index = index
        self.ws = ws
        self.received = 0
        self.synced = -1
        self.joined = False


class Phase:
    """What receivers do with a chat message during the current phase."""

    def __init__(self, peers: int) -> None:
        self.target = 0
        self.remaining = peers
        self.done = asyncio.Event()
        self.latencies: list[float] = []
        self.last_receipt = 0.0
        self.sync_round = -1
        self.sync_rounds = 0
        self.sync_remaining = 0
        self.synced = asyncio.Event()

    def start(self, peers: list[Peer]) -> None:
        """Reset the counts of a new phase."""
        for peer in peers:
            peer.received = 0
        self.latencies = []

    def expect(self, target: int, peers: int) -> asyncio.Event:
        """The event set once every peer has received ``target`` messages this phase."""
        self.target = target
        self.remaining = peers
        self.done = asyncio.Event()
        return self.done

    def start_sync(self, peers: int) -> int:
        """Start a new sync round (numbers never repeat); return its number."""
        round_ = self.sync_round = self.sync_rounds
        self.sync_rounds += 1
        self.sync_remaining = peers
        self.synced = asyncio.Event()
        return round_

    def on_message(self, peer: Peer, message: str, now: float) -> None:
        head = message[0]
        if head == "s":  # a sync marker: "s<round>"
            round_ = int(message[1:])
            if round_ == self.sync_round and peer.synced < round_:
                peer.synced = round_
                self.sync_remaining -= 1
                if self.sync_remaining == 0:
                    self.synced.set()
            return
        if head == "l":  # a latency probe: "l<perf_counter at send>"
            self.latencies.append(now - float(message[1:]))
        peer.received += 1
        if peer.received == self.target:
            self.remaining -= 1
            self.last_receipt = now
            if self.remaining == 0:
                self.done.set()


# -- dialects -------------------------------------------------------------------------------


class Speaker:
    """How one dialect connects, joins, sends, pings and reads chat messages."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._verifier = (
            TokenVerifier(job.secret, clock=SystemClock()) if job.secret is not None else None
        )
        self._ref = 0
        self.binary_frames = 0

    def url(self, index: int) -> str:
        base = self.job.urls[index % len(self.job.urls)]
        if self._verifier is None:
            return base
        user = f"bench-{index // self.job.connections_per_user}"
        return f"{base}?token={self._verifier.issue(user, ttl_seconds=3600, name=user)}"

    async def open(self, index: int) -> ClientConnection:
        ws = await connect(
            self.url(index),
            compression=None,
            ping_interval=None,
            max_size=2**24,
            open_timeout=self.job.timeout_seconds,
            close_timeout=5,
        )
        dialect = self.job.dialect
        if dialect == "switchyard":
            await self._expect(ws, lambda raw: _decode_frame(raw).type == "welcome")
        elif dialect == "socketio":
            await self._expect(ws, lambda raw: raw[:1] == "0")
            await ws.send("40")
            await self._expect(ws, lambda raw: raw[:2] == "40")
        return ws

    async def _expect(self, ws: ClientConnection, match: Callable[[str], bool]) -> str:
        async with asyncio.timeout(self.job.timeout_seconds):
            while True:
                raw = await ws.recv()
                if not isinstance(raw, str):  # the protocols say text; counted, then read
                    self.binary_frames += 1
                    raw = raw.decode()
                if raw == "2" and self.job.dialect == "socketio":
                    await ws.send("3")
                    continue
                if match(raw):
                    return raw
                if self.job.dialect != "socketio" and _decode_frame(raw).type == "error":
                    raise RuntimeError(f"the server refused: {raw}")

    def next_ref(self) -> int:
        self._ref += 1
        return self._ref

    async def join(self, ws: ClientConnection) -> None:
        ref = self.next_ref()
        if self.job.dialect == "socketio":
            await ws.send(f'42{ref}["join_room","{ROOM}"]')
            await self._expect(ws, lambda raw: raw.startswith(f"43{ref}["))
            return
        await ws.send(_encode({"type": "join_room", "room": ROOM, "ref": ref}).decode())

        def joined(raw: str) -> bool:
            frame = _decode_frame(raw)
            return frame.type == "room_joined" and frame.ref == ref

        await self._expect(ws, joined)

    def chat(self, message: str) -> str:
        if self.job.dialect == "socketio":
            return "42" + _encode(["send_message", {"room": ROOM, "message": message}]).decode()
        frame = {"type": "send_message", "room": ROOM, "message": message, "ref": self.next_ref()}
        return _encode(frame).decode()

    async def ping(self, ws: ClientConnection) -> None:
        ref = self.next_ref()
        if self.job.dialect == "socketio":
            await ws.send(f'42{ref}["echo",{{"ref":{ref}}}]')
            await self._expect(ws, lambda raw: raw.startswith(f"43{ref}["))
            return
        await ws.send(f'{{"type":"ping","ref":{ref}}}')

        def pong(raw: str) -> bool:
            frame = _decode_frame(raw)
            return frame.type == "pong" and frame.ref == ref

        await self._expect(ws, pong)

    def chat_message(self, raw: str) -> str | None:
        """The chat message a frame carries, or ``None`` (other frames)."""
        if self.job.dialect == "socketio":
            if raw.startswith('42["new_message"'):
                return str(_decode_any(raw[2:])[1]["message"])
            return None
        frame = _decode_frame(raw)
        return frame.message if frame.type == "new_message" else None


async def receive(speaker: Speaker, peer: Peer, phase: Phase) -> None:
    """A connection's receiving task: hand chat messages to the phase; answer engine.io pings."""
    ws = peer.ws
    socketio = speaker.job.dialect == "socketio"
    chat_message = speaker.chat_message
    with contextlib.suppress(ConnectionClosed):  # the connection closing ends the task
        async for raw in ws:
            now = _perf()
            if not isinstance(raw, str):  # the protocols say text; counted, then read
                speaker.binary_frames += 1
                raw = raw.decode()
            if socketio and raw == "2":
                await ws.send("3")
                continue
            message = chat_message(raw)
            if message:
                phase.on_message(peer, message, now)


# -- phases ---------------------------------------------------------------------------------


async def open_many(
    speaker: Speaker,
    count: int,
    *,
    join: bool,
    opened: Callable[[int, ClientConnection], None] | None = None,
) -> list[ClientConnection]:
    """Open ``count`` connections, ``CONNECT_CONCURRENCY`` handshakes at a time; join if asked.

    ``opened(index, ws)`` runs as soon as a connection is ready (to start its
    receiving task at once: a member must read what the room sends while
    others still join, as a browser would).
    """
    connections: list[ClientConnection | None] = [None] * count
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            ws = await speaker.open(index)
            if join:
                await speaker.join(ws)
            connections[index] = ws
            if opened is not None:
                opened(index, ws)

    async with asyncio.TaskGroup() as group:
        for index in range(count):
            group.create_task(one(index))
    return [ws for ws in connections if ws is not None]


async def close_many(connections: list[ClientConnection]) -> None:
    """Close every connection (bounded), then let the tasks see it."""

    async def one(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
            await ws.close()

    gate = asyncio.Semaphore(256)

    async def gated(ws: ClientConnection) -> None:
        async with gate:
            await one(ws)

    await asyncio.gather(*(gated(ws) for ws in connections))


async def idle_phase(speaker: Speaker, job: Job, result: Result) -> None:
    """Open ``job.idle`` connections and read the servers' RSS before and after."""
    warm = await open_many(speaker, min(20, job.idle), join=False)
    await close_many(warm)
    await settle(job.server_pids)
    result.rss_before_kib = rss_kib(job.server_pids)
    phase = Phase(0)
    readers: list[asyncio.Task[None]] = []

    def opened(index: int, ws: ClientConnection) -> None:
        readers.append(asyncio.create_task(receive(speaker, Peer(index, ws), phase)))

    started = _perf()
    connections = await open_many(speaker, job.idle, join=False, opened=opened)
    result.idle_connect_seconds = _perf() - started
    await settle(job.server_pids)
    result.rss_after_kib = rss_kib(job.server_pids)
    result.idle_connections = len(connections)
    await close_many(connections)
    await asyncio.gather(*readers)
    await settle(job.server_pids)


async def echo_phase(speaker: Speaker, job: Job, result: Result) -> None:
    """Round trips on one connection: ``echo_warmup`` unmeasured, then ``echo`` measured."""
    ws = await speaker.open(0)
    try:
        for _ in range(job.echo_warmup):
            await speaker.ping(ws)
        rtts: list[float] = []
        for _ in range(job.echo):
            started = _perf()
            await speaker.ping(ws)
            rtts.append(_perf() - started)
        rtts.sort()
        result.echo_p50_ms = percentile(rtts, 0.50) * 1000
        result.echo_p99_ms = percentile(rtts, 0.99) * 1000
    finally:
        await ws.close()


async def sync(
    speaker: Speaker, sender: ClientConnection, phase: Phase, peers: int, job: Job
) -> None:
    """Send sync markers until every member got one: the room is settled and complete."""
    for wait in (0.5, 1.0, 2.0, 4.0, 8.0):  # 15.5 s in all: well within the idle timeouts
        round_ = phase.start_sync(peers)
        await sender.send(speaker.chat(f"s{round_}"))
        if await _wait(phase.synced, wait):
            return
    raise RuntimeError(f"{phase.sync_remaining} of {peers} members never got a sync marker")


async def room_phases(speaker: Speaker, job: Job, result: Result) -> None:
    """``clients`` members of one room: the spaced broadcast, then the flood."""
    phase = Phase(job.clients)
    by_index: dict[int, Peer] = {}
    readers: list[asyncio.Task[None]] = []

    def opened(index: int, ws: ClientConnection) -> None:
        peer = by_index[index] = Peer(index, ws)
        readers.append(asyncio.create_task(receive(speaker, peer, phase)))

    started = _perf()
    connections = await open_many(speaker, job.clients, join=True, opened=opened)
    result.connect_seconds = _perf() - started
    peers = [by_index[i] for i in sorted(by_index)]
    sender = connections[0]
    # The connections are long-lived: keep them out of the client's full collections, whose
    # pauses would be charged to the servers' latency.
    gc.collect()
    gc.freeze()
    try:
        await sync(speaker, sender, phase, len(peers), job)
        result.ready_seconds = _perf() - started
        await settle(job.server_pids, limit_seconds=5.0)
        if job.broadcasts:
            await broadcast_phase(speaker, job, result, sender, peers, phase)
        if job.flood:
            await sync(speaker, sender, phase, len(peers), job)
            await flood_phase(speaker, job, result, sender, peers, phase)
    finally:
        gc.unfreeze()
        await close_many(connections)
        await asyncio.gather(*readers)


async def broadcast_phase(
    speaker: Speaker,
    job: Job,
    result: Result,
    sender: ClientConnection,
    peers: list[Peer],
    phase: Phase,
) -> None:
    """``broadcasts`` messages, each carrying its send time, spaced ``interval_ms`` apart.

    The next message goes out ``interval_ms`` after the previous one reached
    every member: each measures the fan-out of one broadcast, never a backlog
    (the flood measures throughput).
    """
    phase.start(peers)
    interval = job.interval_ms / 1000
    for k in range(job.broadcasts):
        done = phase.expect(k + 1, len(peers))
        await sender.send(speaker.chat(f"l{_perf():.9f}"))
        if not await _wait(done, job.timeout_seconds):
            break
        await asyncio.sleep(interval)
    latencies = sorted(phase.latencies)
    result.broadcast_deliveries = len(latencies)
    result.broadcast_expected = job.broadcasts * len(peers)
    result.broadcast_p50_ms = percentile(latencies, 0.50) * 1000
    result.broadcast_p99_ms = percentile(latencies, 0.99) * 1000
    result.broadcast_max_ms = (latencies[-1] if latencies else float("nan")) * 1000
    if result.broadcast_deliveries < result.broadcast_expected:
        result.errors.append(
            f"broadcast: {result.broadcast_deliveries} of {result.broadcast_expected} delivered"
        )


async def flood_phase(
    speaker: Speaker,
    job: Job,
    result: Result,
    sender: ClientConnection,
    peers: list[Peer],
    phase: Phase,
) -> None:
    """``flood`` messages back to back; deliveries/s from the first send to the last receipt."""
    phase.start(peers)
    done = phase.expect(job.flood, len(peers))
    frames = [speaker.chat(f"f{k}") for k in range(job.flood)]
    start = _perf()
    for frame in frames:
        await sender.send(frame)
    await _wait(done, job.timeout_seconds)
    delivered = sum(min(p.received, job.flood) for p in peers)
    seconds = (phase.last_receipt if phase.remaining == 0 else _perf()) - start
    result.flood_deliveries = delivered
    result.flood_expected = job.flood * len(peers)
    result.flood_seconds = seconds
    result.flood_deliveries_per_second = delivered / seconds
    if delivered < result.flood_expected:
        result.errors.append(f"flood: {delivered} of {result.flood_expected} delivered")


async def _wait(event: asyncio.Event, timeout_seconds: float) -> bool:
    """Wait for ``event`` at most ``timeout_seconds``; whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_seconds):
            await event.wait()
    return event.is_set()


async def _guarded(name: str, result: Result, body: Awaitable[None]) -> None:
    try:
        await body
    except Exception as exc:  # noqa: BLE001 - reported in the result; the next phase goes on
        result.errors.append(f"{name}: {type(exc).__name__}: {exc}")


async def run(job: Job) -> Result:
    """Run the job's phases in order; a failed phase is recorded in ``errors``."""
    raise_fd_limit(max(job.idle, job.clients) + 64)
    speaker = Speaker(job)
    result = Result()
    if job.idle:
        await _guarded("idle", result, idle_phase(speaker, job, result))
    if job.echo:
        await _guarded("echo", result, echo_phase(speaker, job, result))
    if job.clients and (job.broadcasts or job.flood):
        await _guarded("room", result, room_phases(speaker, job, result))
    result.binary_frames = speaker.binary_frames
    return result


def main() -> None:
    """Read a :class:`Job` from stdin, write its :class:`Result` to stdout."""
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=Job)
    result = uvloop.run(run(job))
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")


if __name__ == "__main__":
    main()
