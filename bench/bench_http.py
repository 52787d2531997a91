"""HTTP: the node's cached ``GET /api/cache/<key>`` and ``GET /healthz`` against bare Quart.

Two servers run side by side on free loopback ports, both pinned to one core
(``taskset``) while wrk runs on another:

* the node: ``python -m runtime`` (no Redis: the cached GET is an L1 hit, so
  Redis is never asked), its JWT secret known, the key set once beforehand
  with a ``PUT``; every GET carries an admin token in ``Authorization``;
* the peer: a bare Quart app answering ``GET /`` with ``hello world``, served
  by Hypercorn's own CLI on its uvloop worker (``--worker-class uvloop``,
  in process: ``--workers 0``).

Like with like: both are Hypercorn 0.18 on uvloop, with Hypercorn's default
HTTP/1.1 keep-alive (wrk keeps its connections open), and Hypercorn's access
log off on both (the node's own access log is a DEBUG record, off at its
default INFO level). The node pays what it keeps on every request: request
ids, the JSON error shape, per-status counters, bearer-token auth.

Each run measures the three contenders in turns, after one warm-up pass over
all of them: ``--slices`` rounds, each giving every contender
``duration / slices`` seconds of wrk in a rotated order, so load from other
jobs on a shared machine falls on all of them alike. A contender's req/s in a
run is its requests over its seconds; its p99 is the median of its slices'
(wrk ``--latency``). A ratio is the node's req/s over the peer's in the same
run, and the tables print medians of per-run ratios.

    python bench/bench_http.py [--runs 3] [--duration 10] [--connections 50]

Needs Debian's ``wrk`` (``./dev bench`` installs it) and, for pinning,
``taskset`` and two cores (without them the servers and wrk share cores,
and the output says so).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _common import environment_lines, markdown_table, median, progress, rotated, verdict

from runtime import SystemClock, TokenVerifier
from runtime.testing import NodeProcess, free_port

SECRET = "bench-http-" + "s" * 53  # 64 bytes: any HS* algorithm accepts it
KEY = "bench:k"
VALUE = b'{"user":1,"name":"bench","tags":["a","b"]}'
TARGETS = {"cached GET": 0.85, "healthz": 0.95}


def bare_app() -> object:
    """The peer: Quart's hello world (``hypercorn 'bench_http:bare_app()'``)."""
    from quart import Quart

    app = Quart("bare")

    @app.get("/")
    async def hello() -> str:
        return "hello world"

    return app


@dataclass
class Sample:
    """One wrk pass (or a run's passes of one contender, summed)."""

    rps: float
    p99_ms: float
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the server's, during the pass

    @property
    def per_cpu_second(self) -> float:
        """Requests per second of the server's CPU time: its cost, whatever else ran."""
        return self.rps * self.seconds / self.cpu_seconds if self.cpu_seconds else 0.0


@dataclass
class Contender:
    """One URL measured every run, with the headers wrk sends."""

    name: str
    url: str
    pid: int
    headers: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s+99(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_ERRORS = re.compile(r"^\s+(Non-2xx or 3xx responses: \d+|Socket errors: .*)$", re.MULTILINE)


def wrk(
    contender: Contender, *, duration: int, connections: int, threads: int, pin: list[str]
) -> Sample:
    """Run wrk for ``duration`` whole seconds against ``contender``; raise if any failed."""
    command = [*pin, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in contender.headers:
        command += ["-H", header]
    cpu_before = cpu_seconds(contender.pid)
    out = subprocess.run(
        [*command, contender.url], capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    cpu = cpu_seconds(contender.pid) - cpu_before
    rps, p99 = _RPS.search(out), _P99.search(out)
    if rps is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    if errors := _ERRORS.findall(out):
        raise RuntimeError(f"{contender.name}: {'; '.join(errors)}\n{out}")
    p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)]
    return Sample(float(rps.group(1)), p99_ms, duration, cpu)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def combined(slices: list[Sample]) -> Sample:
    """A run's slices of one contender: all its requests over all its seconds, median p99."""
    seconds = sum(s.seconds for s in slices)
    requests = sum(s.rps * s.seconds for s in slices)
    cpu = sum(s.cpu_seconds for s in slices)
    return Sample(requests / seconds, median([s.p99_ms for s in slices]), seconds, cpu)


# -- the servers ------------------------------------------------------------------------------


def cores() -> tuple[list[str], list[str], str]:
    """``taskset`` prefixes for the servers and for wrk, and a note on the pinning."""
    available = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(available) < 2:
        return [], [], "not pinned (needs taskset and 2 cores): servers and wrk share cores"
    server, client = available[0], available[1]
    note = f"servers pinned to core {server}, wrk to core {client} (taskset)"
    return ["taskset", "-c", str(server)], ["taskset", "-c", str(client)], note


def start_node(pin: list[str]) -> NodeProcess:
    node = NodeProcess(
        {"SWITCHYARD_JWT_SECRET": SECRET},
        command=[*pin, sys.executable, "-m", "runtime"],
    )
    node.start()
    return node


def start_bare(pin: list[str]) -> NodeProcess:
    port = free_port()
    command = [*pin, sys.executable, "-m", "hypercorn", "--worker-class", "uvloop"]
    command += ["--workers", "0", "--bind", f"127.0.0.1:{port}", "bench_http:bare_app()"]
    bare = NodeProcess(
        command=command, port=port, cwd=str(Path(__file__).parent), ready_line="Running on"
    )
    bare.start()
    return bare


def put_value(node: NodeProcess, token: str) -> None:
    request = urllib.request.Request(
        f"{node.url}/api/cache/{KEY}",
        data=VALUE,
        method="PUT",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 201:
            raise RuntimeError(f"PUT answered {response.status}")
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{node.url}/api/cache/{KEY}", headers={"Authorization": f"Bearer {token}"}
        ),
        timeout=10,
    ) as response:
        if response.read() != VALUE:
            raise RuntimeError("GET did not answer the value PUT stored")


# -- the run ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> tuple[list[Contender], str]:
    server_pin, client_pin, note = cores()
    token = TokenVerifier(SECRET, clock=SystemClock()).issue(
        "bench", roles=["admin"], ttl_seconds=3600
    )
    node, bare = start_node(server_pin), start_bare(server_pin)
    try:
        put_value(node, token)
        peer = Contender("bare Quart hello world", f"{bare.url}/", bare.pid)
        cached = Contender(
            "cached GET",
            f"{node.url}/api/cache/{KEY}",
            node.pid,
            [f"Authorization: Bearer {token}"],
        )
        healthz = Contender("healthz", f"{node.url}/healthz", node.pid)
        contenders = [peer, cached, healthz]
        options = {
            "connections": args.connections,
            "threads": args.threads,
            "pin": client_pin,
        }
        progress(f"warm-up: {args.warmup:g}s each; {note}")
        for contender in contenders:
            wrk(contender, duration=max(1, round(args.warmup)), **options)
        part = max(1, round(args.duration / args.slices))  # wrk takes whole seconds
        for run in range(args.runs):
            slices: dict[str, list[Sample]] = {c.name: [] for c in contenders}
            for turn in range(args.slices):
                for contender in rotated(contenders, run + turn):
                    slices[contender.name].append(wrk(contender, duration=part, **options))
            for contender in contenders:
                sample = combined(slices[contender.name])
                contender.samples.append(sample)
                progress(
                    f"run {run + 1}/{args.runs} {contender.name}: {sample.rps:,.0f} req/s, "
                    f"p99 {sample.p99_ms:.2f} ms, {sample.per_cpu_second:,.0f} req per CPU-s"
                )
            for contender in contenders:
                mine, theirs = contender.samples[-1], peer.samples[-1]
                contender.ratios.append(mine.rps / theirs.rps)
                if theirs.per_cpu_second:
                    contender.cpu_ratios.append(mine.per_cpu_second / theirs.per_cpu_second)
    finally:
        node.stop()
        bare.stop()
    return contenders, note


def report(contenders: list[Contender], args: argparse.Namespace, note: str) -> str:
    rows = [
        [
            c.name,
            f"{median([s.rps for s in c.samples]):,.0f}",
            f"{median([s.p99_ms for s in c.samples]):.2f}",
            f"{median(c.ratios):.2f}x",
            ", ".join(f"{r:.2f}" for r in c.ratios),
            f"{median([s.per_cpu_second for s in c.samples]):,.0f}",
            f"{median(c.cpu_ratios):.2f}x",
        ]
        for c in contenders
    ]
    results = markdown_table(
        [
            "Contender",
            "req/s (median)",
            "p99 ms (median)",
            "ratio",
            "per-run ratios",
            "req per server CPU-s",
            "CPU ratio",
        ],
        rows,
        "lrrrlrr",
    )
    by_name = {c.name: c for c in contenders}
    target_rows = [
        [
            f"`{path}`",
            f"{median(by_name[name].ratios):.2f}x",
            f">= {target:.2f}x",
            verdict(median(by_name[name].ratios) >= target),
        ]
        for name, target, path in (
            ("cached GET", TARGETS["cached GET"], f"GET /api/cache/{KEY} (admin token, L1 hit)"),
            ("healthz", TARGETS["healthz"], "GET /healthz"),
        )
    ]
    targets = markdown_table(["Path", "ratio", "target", "verdict"], target_rows, "lrrl")
    setup = (
        f"- wrk -t{args.threads} -c{args.connections} --latency, {args.slices} interleaved "
        f"slices of {max(1, round(args.duration / args.slices))}s per contender and run, "
        f"{args.runs} runs after a "
        f"{args.warmup:g}s warm-up; {note}",
        "- both servers: Hypercorn on uvloop, default keep-alive, Hypercorn access log off; "
        "the node at its default log level (its DEBUG access log off), no Redis",
    )
    return "\n\n".join(
        [
            "## HTTP: the node against bare Quart/Hypercorn",
            results,
            "Ratio: the contender's req/s over the bare app's, in the same run (the targets' "
            "measure). CPU ratio: the same for requests per second of the server process's "
            "own CPU time (/proc), which other jobs on a shared machine disturb far less.",
            targets,
            "\n".join(environment_lines(setup)),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs (default 3)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per wrk pass (default 10)"
    )
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--slices",
        type=int,
        default=5,
        help="turns per run: each contender gets duration/slices seconds a turn (default 5)",
    )
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of warm-up per contender (default 3)"
    )
    args = parser.parse_args()
    if (
        min(args.runs, args.connections, args.threads, args.slices) < 1
        or min(args.duration, args.warmup) <= 0
    ):
        parser.error("--runs, --connections, --threads and --slices are >= 1; seconds are > 0")
    if args.duration / args.slices < 1:
        parser.error("each slice needs at least 1s (wrk takes whole seconds): raise --duration")
    if shutil.which("wrk") is None:
        print(
            "bench_http needs wrk on PATH: `./dev bench` installs it (Debian's package wrk), "
            "or install it yourself (as root: apt-get install wrk)",
            file=sys.stderr,
        )
        sys.exit(2)
    started = time.perf_counter()
    contenders, note = measure(args)
    print(report(contenders, args, note))
    progress(f"done in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
