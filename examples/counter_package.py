# examples/counter_package.py
"""A minimal actor package written by the one pattern (the cache is the full-size example).

Named counters, each with its total and its count in the current time window.
Every part a package has is here, in the order a reader meets them:

* its settings section ``COUNTER_SETTINGS`` (``SWITCHYARD_COUNTER_*``, ``--counter-*``);
* its protocol: public requests typed with their public ``<Command>Reply``
  (``ref.ask(CounterIncrement(...))`` is typed as ``CounterIncrementReply``), and
  a private ``_WindowElapsed`` that the actor's own timer sends it;
* the actor, which alone touches the counts;
* the facade :class:`Counter` under the typed key :data:`COUNTER`, which other
  packages ``setup.require``, routes ``node_context().get`` and actors
  ``self.context.get``;
* its statistics (``counter`` in ``GET /api/statistics``) and routes;
* ``install(setup)``, the one function a node calls. Run it as a setup hook:
  ``python -m runtime --app examples.counter_package:install``.
"""

from __future__ import annotations

from typing import Annotated, assert_never

import msgspec
from msgspec import Meta
from quart import Blueprint, Response

from runtime import (
    Actor,
    ActorRef,
    ChildSpec,
    Extension,
    Message,
    NodeSetup,
    Rejected,
    Request,
    SettingsSection,
    decode_body,
    json_response,
    node_context,
    require_auth,
)

# -- settings: a section of the node's configuration ---------------------------------------


class CounterSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Each field is a ``SWITCHYARD_COUNTER_<FIELD>`` variable and a ``--counter-<field>`` flag."""

    max_counters: Annotated[int, Meta(ge=1, description="Counters held at once.")] = 1000
    window_seconds: Annotated[float, Meta(gt=0, description="Length of a counting window.")] = 60.0


COUNTER_SETTINGS = SettingsSection("counter", CounterSettings, title="Counter (example)")


# -- protocol: what other actors send; replies are public ----------------------------------


class CounterIncrementReply(msgspec.Struct, frozen=True, kw_only=True):
    total: int


class CounterIncrement(
    Request[CounterIncrementReply], tag="counter.increment", frozen=True, kw_only=True
):
    """Add ``by`` to counter ``name``; rejected (``too_many_counters``) past ``max_counters``."""

    name: str
    by: int = 1


class CounterGetReply(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    in_window: int


class CounterGet(Request[CounterGetReply], tag="counter.get", frozen=True, kw_only=True):
    """Read counter ``name`` (0 if it does not exist)."""

    name: str


class CounterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """The package's statistics, as ``GET /api/statistics`` shows them."""

    counters: int
    increments: int
    rejected: int
    windows: int


class CounterStats(Request[CounterStatistics], tag="counter.stats", frozen=True, kw_only=True):
    """Reply with a :class:`CounterStatistics` snapshot."""


CounterMessage = CounterIncrement | CounterGet | CounterStats


class _WindowElapsed(Message, tag="counter.window_elapsed", frozen=True, kw_only=True):
    """Sent by the actor's own timer: start a new window. Private, not in ``CounterMessage``."""


# -- the actor: only its own loop touches the counts ---------------------------------------

CounterReply = CounterIncrementReply | CounterGetReply | CounterStatistics | None


class CounterActor(Actor[CounterMessage | _WindowElapsed]):
    def __init__(self, settings: CounterSettings, facade: Counter) -> None:
        self._settings = settings
        self._facade = facade
        self._totals: dict[str, int] = {}
        self._window: dict[str, int] = {}
        self._increments = self._rejected = self._windows = 0

    async def on_start(self) -> None:
        self._facade.bind(self.context.self_ref)
        self.start_soon(self._tick)

    async def _tick(self) -> None:
        # A linked task: it touches no state, it tells the actor (on the node's clock).
        while True:
            await self.clock.sleep(self._settings.window_seconds)
            await self.context.self_ref.tell(_WindowElapsed())

    async def handle(self, message: CounterMessage | _WindowElapsed) -> CounterReply:
        match message:
            case CounterIncrement(name=name, by=by):
                if name not in self._totals and len(self._totals) >= self._settings.max_counters:
                    self._rejected += 1
                    raise Rejected(
                        "too_many_counters",
                        f"{len(self._totals)} counters exist, the most allowed "
                        "(SWITCHYARD_COUNTER_MAX_COUNTERS)",
                    )
                self._increments += 1
                self._window[name] = self._window.get(name, 0) + by
                self._totals[name] = total = self._totals.get(name, 0) + by
                return CounterIncrementReply(total=total)
            case CounterGet(name=name):
                return CounterGetReply(
                    total=self._totals.get(name, 0), in_window=self._window.get(name, 0)
                )
            case CounterStats():
                return CounterStatistics(
                    counters=len(self._totals),
                    increments=self._increments,
                    rejected=self._rejected,
                    windows=self._windows,
                )
            case _WindowElapsed():
                self._window.clear()
                self._windows += 1
                return None
            case _:
                assert_never(message)


# -- the facade: the package's Python API, found by its typed key --------------------------


class Counter:
    """Named counters, as a Python API. Refs stay inside the package."""

    def __init__(self) -> None:
        self._ref: ActorRef[CounterMessage] | None = None

    def bind(self, ref: ActorRef[CounterMessage]) -> None:
        """Called by the actor as it starts; the ref stays valid across its restarts."""
        self._ref = ref

    def _actor(self) -> ActorRef[CounterMessage]:
        if self._ref is None:
            raise Rejected("unavailable", "the counter actor is not running; retry shortly")
        return self._ref

    async def increment(self, name: str, by: int = 1) -> int:
        """Add ``by`` to counter ``name``; return its new total."""
        reply = await self._actor().ask(CounterIncrement(name=name, by=by))
        return reply.total

    async def get(self, name: str) -> CounterGetReply:
        """Counter ``name``'s total and its count in the current window."""
        return await self._actor().ask(CounterGet(name=name))

    async def statistics(self) -> CounterStatistics:
        """A snapshot of the package's counters."""
        return await self._actor().ask(CounterStats())


COUNTER: Extension[Counter] = Extension("counter", Counter)


# -- routes: HTTP traffic in, messages to the facade ---------------------------------------


class IncrementBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    by: Annotated[int, Meta(ge=1, le=1_000_000)] = 1


def counter_blueprint() -> Blueprint:
    """``POST /api/counters/<name>`` (body ``{"by": 1}``) and ``GET /api/counters/<name>``."""
    routes = Blueprint("counter", __name__)

    @routes.post("/api/counters/<name>")
    @require_auth()
    async def increment(name: str) -> Response:
        body = await decode_body(IncrementBody)
        total = await node_context().get(COUNTER).increment(name, by=body.by)
        return json_response(CounterIncrementReply(total=total))

    @routes.get("/api/counters/<name>")
    @require_auth()
    async def read(name: str) -> Response:
        return json_response(await node_context().get(COUNTER).get(name))

    return routes


# -- install: the one function a node calls ------------------------------------------------


def install(setup: NodeSetup) -> Counter:
    """Add the counter actor, its routes and statistics to a node; provide :data:`COUNTER`."""
    settings = setup.section(COUNTER_SETTINGS)
    counter = Counter()
    setup.add_actor(ChildSpec("counter", lambda: CounterActor(settings, counter)))
    setup.add_blueprint(counter_blueprint())
    setup.add_statistics("counter", counter.statistics)
    setup.provide(COUNTER, counter)
    return counter
