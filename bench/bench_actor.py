"""Actor messaging cost against the bare stack it is built on, in one run.

Peers, in the same run:

* bare anyio: a memory object stream, ``await send()``, an ``anyio.Event`` per
  reply and ``fail_after`` per request: the obvious way to write it;
* bare asyncio: ``asyncio.Queue`` with a future per reply and no timeout: the
  floor (what ``ask`` adds on top is the envelope, the timeout, backpressure,
  statistics and the error mapping).

    python bench/bench_actor.py [--messages 100000] [--runs 3]

Prints ops/s (medians of ``--runs``) and the ratio Switchyard / bare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from runtime import Actor, ChildSpec, Message
from runtime.testing import open_system


class Inc(Message, tag="bench.inc", kw_only=True, frozen=True):
    n: int


class Counter(Actor[Inc]):
    def __init__(self) -> None:
        self.total = 0

    async def handle(self, message: Inc) -> int:
        self.total += message.n
        return self.total


async def switchyard_ask(count: int) -> float:
    async with open_system([ChildSpec("counter", Counter, mailbox_size=1024)]) as refs:
        ref = refs["counter"]
        start = time.perf_counter()
        for i in range(count):
            await ref.ask(Inc(n=i))
        return count / (time.perf_counter() - start)


async def switchyard_tell(count: int) -> float:
    async with open_system([ChildSpec("counter", Counter, mailbox_size=1024)]) as refs:
        ref = refs["counter"]
        start = time.perf_counter()
        for i in range(count):
            await ref.tell(Inc(n=i))
        await ref.ask(Inc(n=0))  # drain
        return count / (time.perf_counter() - start)


async def bare_ask(count: int) -> float:
    send, receive = anyio.create_memory_object_stream[tuple[Inc, list[Any]]](1024)
    total = 0

    async def server() -> None:
        nonlocal total
        async with receive:
            async for message, slot in receive:
                total += message.n
                slot.append(total)
                slot[0].set()

    async with anyio.create_task_group() as tg, send:
        tg.start_soon(server)
        start = time.perf_counter()
        for i in range(count):
            event = anyio.Event()
            slot: list[Any] = [event]
            with anyio.fail_after(5):
                await send.send((Inc(n=i), slot))
                await event.wait()
        elapsed = time.perf_counter() - start
    return count / elapsed


async def bare_tell(count: int) -> float:
    send, receive = anyio.create_memory_object_stream[Inc](1024)
    done = anyio.Event()

    async def server() -> None:
        seen = 0
        async with receive:
            async for _ in receive:
                seen += 1
                if seen == count:
                    done.set()

    async with anyio.create_task_group() as tg, send:
        tg.start_soon(server)
        start = time.perf_counter()
        for i in range(count):
            await send.send(Inc(n=i))
        await done.wait()
        elapsed = time.perf_counter() - start
    return count / elapsed


async def asyncio_ask(count: int) -> float:
    queue: asyncio.Queue[tuple[Inc, asyncio.Future[int]]] = asyncio.Queue(1024)
    loop = asyncio.get_running_loop()
    total = 0

    async def server() -> None:
        nonlocal total
        while True:
            message, future = await queue.get()
            total += message.n
            future.set_result(total)

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        start = time.perf_counter()
        for i in range(count):
            future: asyncio.Future[int] = loop.create_future()
            queue.put_nowait((Inc(n=i), future))
            await future
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    return count / elapsed


async def asyncio_tell(count: int) -> float:
    queue: asyncio.Queue[Inc] = asyncio.Queue(1024)
    done = anyio.Event()

    async def server() -> None:
        for _ in range(count):
            await queue.get()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        start = time.perf_counter()
        for i in range(count):
            await queue.put(Inc(n=i))
        await done.wait()
        elapsed = time.perf_counter() - start
    return count / elapsed


def median_rate(bench: Callable[[int], Awaitable[float]], count: int, runs: int) -> float:
    return statistics.median(
        anyio.run(bench, count, backend_options={"use_uvloop": True}) for _ in range(runs)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    rows = [
        ("ask round trip", switchyard_ask, bare_ask, asyncio_ask),
        ("tell (one-way)", switchyard_tell, bare_tell, asyncio_tell),
    ]
    print(f"{options.messages} messages, median of {options.runs} runs, uvloop")
    print(
        f"{'operation':<16} {'switchyard/s':>13} {'anyio/s':>10} {'ratio':>6}"
        f" {'asyncio/s':>10} {'ratio':>6}"
    )
    for name, ours, anyio_peer, asyncio_peer in rows:
        mine = median_rate(ours, options.messages, options.runs)
        peer_a = median_rate(anyio_peer, options.messages, options.runs)
        peer_b = median_rate(asyncio_peer, options.messages, options.runs)
        print(
            f"{name:<16} {mine:>13,.0f} {peer_a:>10,.0f} {mine / peer_a:>6.2f}"
            f" {peer_b:>10,.0f} {mine / peer_b:>6.2f}"
        )


if __name__ == "__main__":
    main()
