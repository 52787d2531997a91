"""Test actors shared by the runtime tests: they log their lifecycle to a list."""

from __future__ import annotations

from typing import assert_never

import anyio

from runtime import Actor, Message, Rejected


class Ping(Message, tag="test.ping", kw_only=True, frozen=True):
    n: int = 0


class Crash(Message, tag="test.crash", kw_only=True, frozen=True):
    reason: str = "boom"


class Block(Message, tag="test.block", kw_only=True, frozen=True):
    pass


class Refuse(Message, tag="test.refuse", kw_only=True, frozen=True):
    pass


class StopSelf(Message, tag="test.stop", kw_only=True, frozen=True):
    pass


WorkerMessage = Ping | Crash | Block | Refuse | StopSelf


class Worker(Actor[WorkerMessage]):
    """Replies to pings with (name, incarnation, n); crashes, blocks or stops on demand."""

    incarnations: dict[str, int] = {}

    def __init__(
        self,
        name: str,
        log: list[tuple[str, str]],
        *,
        gate: anyio.Event | None = None,
        fail_start: BaseException | None = None,
        hang_on_stop: bool = False,
    ) -> None:
        self.name = name
        self.log = log
        self.gate = gate
        self.fail_start = fail_start
        self.hang_on_stop = hang_on_stop
        self.incarnation = sum(1 for event, who in log if event == "start" and who == name)

    async def on_start(self) -> None:
        self.log.append(("start", self.name))
        if self.fail_start is not None:
            raise self.fail_start

    async def handle(self, message: WorkerMessage) -> object:
        match message:
            case Ping(n=n):
                return (self.name, self.incarnation, n)
            case Crash(reason=reason):
                raise RuntimeError(reason)
            case Block():
                assert self.gate is not None
                await self.gate.wait()
                return "unblocked"
            case Refuse():
                raise Rejected("bad_input", "refused on purpose")
            case StopSelf():
                self.stop()
                return "stopping"
            case _:
                assert_never(message)

    async def on_stop(self) -> None:
        if self.hang_on_stop:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.log.append(("stop-cancelled", self.name))
                raise
        self.log.append(("stop", self.name))
