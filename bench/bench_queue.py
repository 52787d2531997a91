"""Queue: end-to-end throughput and idle latency of no-op jobs against saq and arq, one Redis.

Every contender runs one worker process and one sequential producer process
on the same private ``redis-server`` (``runtime.testing.RedisServer``, flushed
between turns) with durability on: an append only file, ``appendfsync
everysec`` (read back with ``CONFIG GET`` and printed in the header):

* **saq 0.26** (``bench/.venvs/saq``): ``saq.Worker`` at the row's concurrency,
  ``queue.enqueue``; latency waits with ``job.refresh(until_complete=...)``
  (``_queue_peer_saq.py``);
* **arq 0.26** (``bench/.venvs/arq``), twice: its default ``poll_delay`` of
  0.5 s and a tuned 0.01 s (worker and result wait alike), ``max_jobs`` at the
  row's concurrency (``_queue_peer_arq.py``);
* **Switchyard**: a node (``python -m runtime``) running the queue actor with
  a no-op handler at the row's concurrency; the producer is the ``Queue``
  facade over its own Redis link (``_queue_switchyard.py``); plus an
  in-memory row (no Redis, producer and workers in one process).

Each peer gets its own virtual environment, created on first use under
``bench/.venvs/<peer>`` with pinned versions, because the peers pin older
redis-py (arq ``redis<6``, saq ``redis<8``) than Switchyard's own.

Rows: throughput of ``--jobs`` no-op jobs from the first enqueue to the last
completion at concurrency 10 and 100 (the producer enqueues one job at a time,
then waits until the queue holds no unfinished job), the producer's enqueue
rate, and enqueue-to-completion latency p50/p99 on an idle queue (sequential
jobs). Each run measures every contender in an order rotated per run; ratios
are per run against saq, and the table prints medians::

    python bench/bench_queue.py [--runs 3] [--jobs 10000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from _common import markdown_table, median, progress, rotated, verdict

from runtime.testing import NodeProcess, RedisServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Every Switchyard process imports this checkout's code (not whatever the venv's editable
# install points at), and the worker node also finds the ``_queue_switchyard`` hook.
CODE_PATH = os.pathsep.join([str(HERE), str(REPO)])
VENVS = HERE / ".venvs"
THROUGHPUT_VS_SAQ, MEMORY_VS_SAQ = 2.0, 10.0
CONCURRENCIES = (10, 100)


@dataclass(frozen=True)
class Peer:
    """One peer library: its virtual environment, pinned requirements and harness script."""

    venv: str
    requirements: tuple[str, ...]
    script: str
    version_of: str


SAQ_PEER = Peer("saq", ("saq[redis]==0.26.4", "typing_extensions", "uvloop"), "saq", "saq")
ARQ_PEER = Peer("arq", ("arq==0.26.3", "uvloop"), "arq", "arq")


@dataclass
class Contender:
    """One stack under test, its harness arguments and what each run measured."""

    name: str
    peer: Peer | None
    extra: tuple[str, ...] = ()
    latency_samples_cap: int | None = None
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, measure: str, value: float) -> None:
        self.figures.setdefault(measure, []).append(value)


@dataclass(frozen=True)
class Plan:
    runs: int
    jobs: int
    samples: int


# -- peers' environments ------------------------------------------------------------------------


def python_of(peer: Peer) -> Path:
    return VENVS / peer.venv / "bin" / "python"


def ensure_venv(peer: Peer) -> None:
    """Create ``bench/.venvs/<peer>`` with the pinned requirements, unless it already has them."""
    stamp = VENVS / peer.venv / ".requirements"
    wanted = "\n".join(peer.requirements)
    if python_of(peer).exists() and stamp.exists() and stamp.read_text() == wanted:
        return
    progress(f"creating bench/.venvs/{peer.venv} with {', '.join(peer.requirements)}")
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / peer.venv)], check=True)
    pip = [str(python_of(peer)), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, *peer.requirements], check=True)
    stamp.write_text(wanted)


def peer_version(peer: Peer) -> str:
    code = f"import importlib.metadata as m; print(m.version({peer.version_of!r}))"
    done = subprocess.run(
        [str(python_of(peer)), "-c", code], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "?"


# -- one turn -----------------------------------------------------------------------------------


SWITCHYARD = str(HERE / "_queue_switchyard.py")


@contextmanager
def worker(contender: Contender, url: str, concurrency: int) -> Iterator[NodeProcess]:
    if contender.peer is None:  # a Switchyard node: python -m runtime with the no-op hook
        env = {
            "SWITCHYARD_REDIS_URL": url,
            "SWITCHYARD_QUEUE_CONCURRENCY": f"default={concurrency}",
            "SWITCHYARD_JWT_SECRET": "bench-queue-secret-at-least-32-bytes-long",
            "PYTHONPATH": CODE_PATH,
        }
        process = NodeProcess(env, ["--app", "_queue_switchyard:setup"], cwd=str(HERE))
    else:
        script = str(HERE / f"_queue_peer_{contender.peer.script}.py")
        command = [str(python_of(contender.peer)), script, "worker", url, str(concurrency)]
        process = NodeProcess(command=[*command, *contender.extra], ready_line="peer worker ready")
    try:
        process.start(ready_timeout_seconds=30)  # a node that never got ready is stopped too
        yield process
    finally:
        process.stop()


def produce(contender: Contender, role: str, url: str, number: int) -> dict[str, object]:
    if contender.peer is None:
        command = [sys.executable, SWITCHYARD, role, url, str(number)]
    else:
        script = str(HERE / f"_queue_peer_{contender.peer.script}.py")
        command = [str(python_of(contender.peer)), script, role, url, str(number)]
    done = subprocess.run(
        [*command, *contender.extra],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "PYTHONPATH": CODE_PATH},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{contender.name} {role} failed:\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout)
    return result


def memory_turn(plan: Plan, contender: Contender, run: int) -> None:
    """Switchyard without Redis: producer and workers in one process (concurrency 100)."""
    command = [sys.executable, SWITCHYARD, "memory", str(plan.jobs), str(CONCURRENCIES[-1])]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        env={**os.environ, "PYTHONPATH": CODE_PATH},
    )
    result = json.loads(done.stdout)
    contender.add("memory", plan.jobs / float(result["seconds"]))
    progress(
        f"run {run + 1}/{plan.runs} Switchyard in memory: "
        f"{contender.figures['memory'][-1]:,.0f} jobs/s"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def turn(plan: Plan, contender: Contender, redis: RedisServer, run: int) -> None:
    for concurrency in CONCURRENCIES:
        redis.flushall()
        with worker(contender, redis.url, concurrency):
            result = produce(contender, "throughput", redis.url, plan.jobs)
        seconds, enqueue = float(str(result["seconds"])), float(str(result["enqueue_seconds"]))
        contender.add(f"throughput {concurrency}", plan.jobs / seconds)
        if concurrency == CONCURRENCIES[0]:
            contender.add("enqueue", plan.jobs / enqueue)
        progress(
            f"run {run + 1}/{plan.runs} {contender.name} c={concurrency}: "
            f"{plan.jobs / seconds:,.0f} jobs/s (enqueue {plan.jobs / enqueue:,.0f}/s)"
        )
    redis.flushall()
    samples = min(plan.samples, contender.latency_samples_cap or plan.samples)
    with worker(contender, redis.url, CONCURRENCIES[0]):
        result = produce(contender, "latency", redis.url, samples)
    latencies = [float(v) for v in result["latencies_ms"]]  # type: ignore[attr-defined]
    contender.add("p50", percentile(latencies, 0.5))
    contender.add("p99", percentile(latencies, 0.99))
    progress(
        f"run {run + 1}/{plan.runs} {contender.name} latency: p50 "
        f"{percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms"
    )


def durability(redis: RedisServer) -> str:
    """The bench Redis's persistence, read back from the server (``CONFIG GET``)."""
    import redis as redis_  # the bench's own interpreter has redis-py (Switchyard's)

    client = redis_.Redis.from_url(redis.url)
    try:
        found = client.config_get("appendonly")
        found.update(client.config_get("appendfsync"))
    finally:
        client.close()
    return f"appendonly {found['appendonly']}, appendfsync {found['appendfsync']}"


def measure(plan: Plan, contenders: list[Contender]) -> str:
    # Durability on, for every contender alike: an append only file fsynced every second.
    with RedisServer(appendonly=True, appendfsync="everysec") as redis:
        persistence = durability(redis)
        progress(f"bench redis-server: {persistence}")
        for run in range(plan.runs):
            for contender in rotated(contenders, run):
                try:
                    turn(plan, contender, redis, run)
                    if contender.peer is None:
                        memory_turn(plan, contender, run)
                except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                    progress(f"{contender.name}: the turn failed: {exc}")
    return persistence


# -- report -------------------------------------------------------------------------------------


MEASURES = (
    ("throughput 10", "throughput, concurrency 10 (jobs/s)", True),
    ("throughput 100", "throughput, concurrency 100 (jobs/s)", True),
    ("enqueue", "enqueue, sequential (jobs/s)", True),
    ("p50", "idle latency p50 (ms)", False),
    ("p99", "idle latency p99 (ms)", False),
    ("memory", "in memory, no Redis, concurrency 100 (jobs/s)", True),
)


def cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    value = median(values)
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def paired(mine: list[float], theirs: list[float]) -> list[float]:
    return [a / b for a, b in zip(mine, theirs, strict=False) if b]


def ratio_cell(found: list[float]) -> str:
    if not found:
        return "n/a"
    return f"{median(found):.2f}x ({', '.join(f'{r:.2f}' for r in found)})"


def report(plan: Plan, contenders: list[Contender], seconds: float, persistence: str) -> str:
    saq = contenders[0]
    header = [
        "Measure",
        *(c.name for c in contenders),
        *(f"{c.name} / saq" for c in contenders[1:]),
    ]
    body = []
    for key, label, _higher in MEASURES:
        row = [label, *(cell(c.figures.get(key, [])) for c in contenders)]
        row += [
            ratio_cell(paired(c.figures.get(key, []), saq.figures.get(key, [])))
            for c in contenders[1:]
        ]
        body.append(row)
    table = markdown_table(header, body, "l" + "r" * (2 * len(contenders) - 1))
    switchyard = next((c for c in contenders if c.name.startswith("Switchyard")), None)
    targets = []
    for key, target, limit, higher in (
        (
            "throughput 10",
            f">= {THROUGHPUT_VS_SAQ:g}x saq, concurrency 10",
            THROUGHPUT_VS_SAQ,
            True,
        ),
        (
            "throughput 100",
            f">= {THROUGHPUT_VS_SAQ:g}x saq, concurrency 100",
            THROUGHPUT_VS_SAQ,
            True,
        ),
        ("p99", "idle latency p99 <= saq's", 1.0, False),
        ("memory", f"in-memory throughput >= {MEMORY_VS_SAQ:g}x saq", MEMORY_VS_SAQ, True),
    ):
        found = (
            []
            if switchyard is None
            else paired(
                switchyard.figures.get(key, []),
                saq.figures.get("throughput 100" if key == "memory" else key, []),
            )
        )
        if not found:
            targets.append([target, "n/a", "not measured (its turn failed)"])
            continue
        ratio = median(found)
        ok = ratio >= limit if higher else ratio <= limit
        targets.append([target, f"{ratio:.2f}x", verdict(ok)])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    notes = [
        f"- {plan.runs} run(s), contenders in an order rotated per run; {plan.jobs:,} no-op jobs "
        f"per throughput row; latency: {plan.samples} sequential jobs after a warm-up (arq at "
        "its default poll: at most 20, each takes ~0.5-1 s)",
        "- Ratios: the contender's figure over saq's in the same run, median of per-run ratios "
        "(per run in brackets); higher is better for jobs/s, lower for ms",
        "- "
        + "; ".join(
            f"{p.venv} {peer_version(p)} in bench/.venvs/{p.venv}" for p in (SAQ_PEER, ARQ_PEER)
        )
        + f"; every process on uvloop; one private redis-server ({persistence}, RDB off)",
        f"- Machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} "
        f"{platform.release()}; load average at the end {load} (shared machine); "
        f"{platform.python_implementation()} {platform.python_version()}; took {seconds:.0f}s",
    ]
    targets_table = markdown_table(["Target", "Switchyard / saq", "verdict"], targets, "lrl")
    return "\n\n".join(
        [
            f"## Queue: Switchyard against saq and arq (Redis {persistence})",
            table,
            targets_table,
            "\n".join(notes),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="runs (default 3; quick: 1)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs (default 10000; quick: 2000)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 run, fewer jobs")
    args = parser.parse_args()
    plan = Plan(
        runs=args.runs or (1 if args.quick else 3),
        jobs=args.jobs or (2000 if args.quick else 10_000),
        samples=100 if args.quick else 500,
    )
    if min(plan.runs, plan.jobs) < 1:
        parser.error("--runs and --jobs are >= 1")
    for peer in (SAQ_PEER, ARQ_PEER):
        ensure_venv(peer)
    contenders = [
        Contender("saq", SAQ_PEER),
        Contender("arq, poll 0.5 s", ARQ_PEER, ("0.5",), latency_samples_cap=20),
        Contender("arq, poll 0.01 s", ARQ_PEER, ("0.01",)),
    ]
    contenders.append(Contender("Switchyard", None))
    started_at = time.perf_counter()
    persistence = measure(plan, contenders)
    print(report(plan, contenders, time.perf_counter() - started_at, persistence))
    progress(f"done in {time.perf_counter() - started_at:.0f}s")


if __name__ == "__main__":
    main()
