"""Ask deadlines: one timer per timeout value of a ref, instead of one timer per ask.

Arming and cancelling an event-loop timer for every ask costs more than the
rest of the round trip. A ref instead keeps its pending asks in one
insertion-ordered dict per timeout value: every ask of a group waits the
same number of seconds and the clock never goes backwards, so insertion
order is deadline order and the first entry has the earliest deadline. One
timer per group fires at that first deadline; it fails every ask whose
deadline has passed (with AskTimeout) and is armed again for the next one.
Whoever settles an ask first removes its entry: the actor's loop when it
answers, the timer when it fails it, ``Mailbox.close()`` when it stops it.
An ask whose asker gave up (cancelled) stays until one of those reaches it,
at the latest its deadline. The timer is left alone when an ask completes:
it is only ever re-armed when it fires, and a group with nothing left to
watch when it fires is dropped.

An ask therefore fails at its deadline, late only by the event loop's own
latency in running a due timer (no coarse slack), and reads the clock
(``clock.call_later``, ``clock.monotonic``), so ManualClock controls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._clock import Clock, TimerHandle
    from ._errors import AskTimeout
    from ._mailbox import Ask

__all__ = ["AskDeadlines"]


class AskDeadlines(dict["Ask", float]):
    """The pending asks of one ref that share one timeout: ask -> deadline, earliest first.

    The timer runs on the event loop of the system the ref belongs to; a ref
    never outlives that loop, as the mailbox closes when the system stops and
    an ask to a closed mailbox fails before it reaches its group.
    """

    __slots__ = ("_clock", "_groups", "_timed_out", "_timer", "timeout")

    def __init__(
        self,
        groups: dict[float, AskDeadlines],
        timeout: float,
        clock: Clock,
        timed_out: Callable[[object, float], AskTimeout],
    ) -> None:
        super().__init__()
        self._groups = groups
        self._clock = clock
        self._timed_out = timed_out
        self.timeout = timeout
        groups[timeout] = self
        # Its first ask is added right after, with a deadline ``timeout`` from now.
        self._timer: TimerHandle = clock.call_later(timeout, self._fire)

    def _fire(self) -> None:
        """Fail every ask whose deadline has passed; re-arm for the next, or drop the group."""
        clock = self._clock
        now = clock.monotonic()
        while self:
            ask = next(iter(self))
            deadline = self[ask]
            if deadline > now:
                self._timer = clock.call_later(deadline - now, self._fire)
                return
            del self[ask]
            if not ask.future.done():
                ask.future.set_exception(self._timed_out(ask.message, self.timeout))
        if self._groups.get(self.timeout) is self:
            del self._groups[self.timeout]

    def __repr__(self) -> str:
        return f"AskDeadlines(timeout={self.timeout:g}, pending={len(self)})"
