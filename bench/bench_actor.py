"""Actor messaging (``tell``, ``ask``) against the bare stack it is built on, the peers' way.

The method is the peers' harness: one producer, one consumer, a new msgspec
Struct per message, a mailbox (stream) of capacity 1024, every contender on
a fresh event loop, interleaved runs (each run measures every contender, the
order rotated from run to run), and ratios taken per run, then their median.

Peers, in the same run:

* ``tell``: the anyio memory stream used the fast way (producer
  ``send_nowait(m)``, falling back to ``await send(m)`` on ``WouldBlock``;
  consumer ``receive_nowait()``, falling back to ``await receive()``): the
  baseline of the ratio. For context: ``asyncio.Queue`` (``put_nowait``
  falling back to ``await put``; ``await get()``) and the plain
  ``await send()`` / ``async for`` idiom, which checkpoints on every message.
* ``ask``: the same fast path carrying ``(message, future)``, the producer
  awaiting a ``loop.create_future()`` the consumer resolves: the baseline.
  For context: ``asyncio.Queue`` with the same future, and ``await send()``
  with the same future.

Switchyard's ``ask`` also pays for what the peers leave out: a timeout on
every ask, the error mapping, statistics and crash handling.

    python bench/bench_actor.py [--tell-messages 1000000] [--ask-messages 200000]
                                [--runs 3] [--loop asyncio|uvloop|both] [--capacity 1024]

Prints ops/s (medians of ``--runs``), the median of the per-run ratios to
the baseline peer, and the targets of issue 8 with their verdicts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
from _common import environment_lines, markdown_table, median, progress, rotated, timed, verdict

from runtime import Actor, ChildSpec, Message
from runtime.testing import open_system

LOOPS = ("asyncio", "uvloop")
# The targets of issue 8: Switchyard / baseline peer, per path, on every loop.
TARGETS = {"tell": 0.5, "ask": 0.8}


class Inc(Message, tag="bench.inc", kw_only=True, frozen=True):
    n: int


class Counter(Actor[Inc]):
    def __init__(self) -> None:
        self.total = 0

    async def handle(self, message: Inc) -> int:
        self.total += message.n
        return self.total


# One contender: given (messages, capacity), run on a fresh loop and return ops/s.
Bench = Callable[[int, int], Awaitable[float]]


# -- tell -------------------------------------------------------------------------------------


async def switchyard_tell(count: int, capacity: int) -> float:
    async with open_system([ChildSpec("counter", Counter, mailbox_size=capacity)]) as refs:
        ref = refs["counter"]

        async def body() -> None:
            for i in range(count):
                await ref.tell(Inc(n=i))
            await ref.ask(Inc(n=0))  # behind every tell: they have all been handled

        return await timed(count, body)


async def nowait_tell(count: int, capacity: int) -> float:
    send, receive = anyio.create_memory_object_stream[Inc](capacity)
    total = 0

    async def consumer() -> None:
        nonlocal total
        with receive:
            for _ in range(count):
                try:
                    message = receive.receive_nowait()
                except anyio.WouldBlock:
                    message = await receive.receive()
                total += message.n

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            with send:
                for i in range(count):
                    message = Inc(n=i)
                    try:
                        send.send_nowait(message)
                    except anyio.WouldBlock:
                        await send.send(message)

    return await timed(count, body)


async def queue_tell(count: int, capacity: int) -> float:
    queue: asyncio.Queue[Inc] = asyncio.Queue(capacity)
    total = 0

    async def consumer() -> None:
        nonlocal total
        for _ in range(count):
            message = await queue.get()
            total += message.n

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            for i in range(count):
                message = Inc(n=i)
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    await queue.put(message)

    return await timed(count, body)


async def await_send_tell(count: int, capacity: int) -> float:
    send, receive = anyio.create_memory_object_stream[Inc](capacity)
    total = 0

    async def consumer() -> None:
        nonlocal total
        with receive:
            async for message in receive:
                total += message.n

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            with send:
                for i in range(count):
                    await send.send(Inc(n=i))

    return await timed(count, body)


# -- ask --------------------------------------------------------------------------------------


async def switchyard_ask(count: int, capacity: int) -> float:
    async with open_system([ChildSpec("counter", Counter, mailbox_size=capacity)]) as refs:
        ref = refs["counter"]

        async def body() -> None:
            for i in range(count):
                await ref.ask(Inc(n=i))

        return await timed(count, body)


Call = tuple[Inc, "asyncio.Future[int]"]


async def nowait_ask(count: int, capacity: int) -> float:
    send, receive = anyio.create_memory_object_stream[Call](capacity)
    loop = asyncio.get_running_loop()

    async def consumer() -> None:
        total = 0
        with receive:
            while True:
                try:
                    message, future = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        message, future = await receive.receive()
                    except anyio.EndOfStream:
                        return
                except anyio.EndOfStream:
                    return
                total += message.n
                future.set_result(total)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            with send:
                for i in range(count):
                    future: asyncio.Future[int] = loop.create_future()
                    call = (Inc(n=i), future)
                    try:
                        send.send_nowait(call)
                    except anyio.WouldBlock:
                        await send.send(call)
                    await future

    return await timed(count, body)


async def queue_ask(count: int, capacity: int) -> float:
    queue: asyncio.Queue[Call] = asyncio.Queue(capacity)
    loop = asyncio.get_running_loop()

    async def consumer() -> None:
        total = 0
        for _ in range(count):
            message, future = await queue.get()
            total += message.n
            future.set_result(total)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            for i in range(count):
                future: asyncio.Future[int] = loop.create_future()
                call = (Inc(n=i), future)
                try:
                    queue.put_nowait(call)
                except asyncio.QueueFull:
                    await queue.put(call)
                await future

    return await timed(count, body)


async def await_send_ask(count: int, capacity: int) -> float:
    send, receive = anyio.create_memory_object_stream[Call](capacity)
    loop = asyncio.get_running_loop()

    async def consumer() -> None:
        total = 0
        with receive:
            async for message, future in receive:
                total += message.n
                future.set_result(total)

    async def body() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            with send:
                for i in range(count):
                    future: asyncio.Future[int] = loop.create_future()
                    await send.send((Inc(n=i), future))
                    await future

    return await timed(count, body)


# -- the harness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    bench: Bench
    note: str = ""


@dataclass(frozen=True)
class Path:
    """One measured path (``tell`` or ``ask``): its contenders, the first being Switchyard's,
    the second the baseline peer of the ratio."""

    name: str
    messages: int
    contenders: Sequence[Contender]

    @property
    def ours(self) -> Contender:
        return self.contenders[0]

    @property
    def baseline(self) -> Contender:
        return self.contenders[1]


@dataclass
class Result:
    path: Path
    loop: str
    rates: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)


def paths(tell_messages: int, ask_messages: int) -> list[Path]:
    return [
        Path(
            "tell",
            tell_messages,
            [
                Contender("Switchyard `await ref.tell(m)`", switchyard_tell),
                Contender("anyio nowait fast path", nowait_tell, "baseline"),
                Contender("asyncio.Queue", queue_tell, "put_nowait, falling back to put; get"),
                Contender("anyio `await send()`", await_send_tell, "checkpoints per message"),
            ],
        ),
        Path(
            "ask",
            ask_messages,
            [
                Contender("Switchyard `await ref.ask(m)`", switchyard_ask, "with its timeout"),
                Contender("anyio nowait fast path + Future", nowait_ask, "baseline; no timeout"),
                Contender("asyncio.Queue + Future", queue_ask, "no timeout"),
                Contender("anyio `await send()` + Future", await_send_ask, "no timeout"),
            ],
        ),
    ]


def run_once(contender: Contender, messages: int, capacity: int, loop: str) -> float:
    """One measurement on a fresh event loop of the kind ``loop`` names."""
    return anyio.run(
        contender.bench, messages, capacity, backend_options={"use_uvloop": loop == "uvloop"}
    )


def measure(path: Path, loop: str, runs: int, capacity: int) -> Result:
    result = Result(path, loop)
    for run in range(runs):
        rates: dict[str, float] = {}
        for contender in rotated(path.contenders, run):
            rates[contender.name] = run_once(contender, path.messages, capacity, loop)
        progress(
            f"{path.name} on {loop}, run {run + 1}/{runs}: "
            + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
        )
        base = rates[path.baseline.name]
        for name, rate in rates.items():
            result.rates.setdefault(name, []).append(rate)
            result.ratios.setdefault(name, []).append(rate / base)
    return result


def contenders_table(results: Sequence[Result]) -> str:
    header = ["Path", "Loop", "Contender", "messages", "ops/s (median)", "ratio", "Notes"]
    rows = [
        [
            result.path.name,
            result.loop,
            contender.name,
            f"{result.path.messages:,}",
            f"{median(result.rates[contender.name]):,.0f}",
            f"{median(result.ratios[contender.name]):.2f}x",
            contender.note,
        ]
        for result in results
        for contender in result.path.contenders
    ]
    return markdown_table(header, rows, "lllrrrl")


def targets_table(results: Sequence[Result]) -> str:
    header = ["Path", "Loop", "Switchyard/s", "peer/s", "ratio (median of runs)", "runs", "target"]
    header.append("verdict")
    rows = []
    for result in results:
        ours, peer = result.path.ours.name, result.path.baseline.name
        ratio = median(result.ratios[ours])
        target = TARGETS[result.path.name]
        per_run = ", ".join(f"{r:.2f}" for r in result.ratios[ours])
        rows.append(
            [
                f"`{result.path.name}`",
                result.loop,
                f"{median(result.rates[ours]):,.0f}",
                f"{median(result.rates[peer]):,.0f}",
                f"{ratio:.2f}x",
                per_run,
                f">= {target}x {peer}",
                verdict(ratio >= target),
            ]
        )
    return markdown_table(header, rows, "llrrrrll")


def environment(loops: Sequence[str], runs: int, capacity: int) -> list[str]:
    # _common's note names uvloop as the loop of every contender; here the loop varies.
    python = f"- {platform.python_implementation()} "
    kept = [line for line in environment_lines() if not line.startswith(python)]
    return [
        *kept,
        f"{python}{platform.python_version()} ({sys.platform}); "
        f"event loops: {', '.join(loops)} (a fresh loop per measurement); pid {os.getpid()}",
        f"- {runs} interleaved runs, contender order rotated per run; ratio = median of the "
        f"per-run ratios to the baseline peer; mailbox / stream capacity {capacity}; a new "
        "msgspec Struct per message",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tell-messages", type=int, default=1_000_000)
    parser.add_argument("--ask-messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=1024)
    parser.add_argument("--loop", choices=[*LOOPS, "both"], default="both")
    parser.add_argument(
        "--only", choices=["tell", "ask"], default=None, help="measure one path only"
    )
    options = parser.parse_args(argv)
    loops = LOOPS if options.loop == "both" else (options.loop,)
    results = [
        measure(path, loop, options.runs, options.capacity)
        for loop in loops
        for path in paths(options.tell_messages, options.ask_messages)
        if options.only in (None, path.name)
    ]
    print("\n".join(environment(loops, options.runs, options.capacity)))
    print()
    print(contenders_table(results))
    print()
    print("Ratio: ops/s against the baseline peer of the path, measured in the same run.")
    print()
    print(targets_table(results))


if __name__ == "__main__":
    main()
