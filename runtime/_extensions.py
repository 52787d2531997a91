"""Typed discovery: how one package finds another's facade without string keys.

A package declares a typed key next to its facade and provides the facade
when it is installed; others require it by the same key::

    CACHE: Extension[Cache] = Extension("cache", Cache)

    def install(setup: NodeSetup) -> Cache:
        cache = ...
        setup.provide(CACHE, cache)
        return cache

    # in another package's install(), in a route, or in an actor
    cache = setup.require(CACHE)              # NodeSetup, at assembly
    cache = node_context().get(CACHE)         # a request handler
    cache = self.context.get(CACHE)           # an actor

The key carries the facade's type, so ``require`` is typed as returning it.
A key nobody provided is a :class:`~runtime.ConfigError` naming the key and
who needed it, raised while the node is assembled, before anything starts.
"""

from __future__ import annotations

import re
import sys
from typing import Generic, TypeVar, cast

from ._errors import ConfigError

__all__ = ["Extension", "Extensions"]

T = TypeVar("T")

# Modules that only forward a lookup; the caller named in errors is whoever called them.
_PASS_THROUGH = frozenset(
    {__name__, "runtime._boot", "runtime._node_context", "runtime._actor", "runtime._setup"}
)
_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


class Extension(Generic[T]):
    """A typed key for one facade a package provides to the node (``CACHE``, ``HUB``).

    Keys compare by identity: two packages that pick the same name still hold
    different keys, and providing both is refused as a duplicate name.
    """

    __slots__ = ("kind", "name")

    def __init__(self, name: str, kind: type[T]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"extension name {name!r} must be dotted lower-case words, such as 'cache'"
            )
        self.name = name
        self.kind = kind

    def __repr__(self) -> str:
        return f"Extension({self.name!r}, {self.kind.__qualname__})"


class Extensions:
    """The facades provided to one node, by typed key.

    Filled while the node is assembled (:meth:`provide`), read afterwards by
    routes and actors (:meth:`get`). One value per key; a second ``provide``
    of the same key or name is a :class:`~runtime.ConfigError`.
    """

    __slots__ = ("_providers", "_values")

    def __init__(self) -> None:
        self._values: dict[Extension[object], object] = {}
        self._providers: dict[str, str] = {}  # name -> who provided it

    def provide(self, key: Extension[T], value: T, *, provider: str | None = None) -> None:
        """Register ``value`` under ``key``.

        Raises:
            ConfigError: the key (or another key of the same name) was already
                provided, or ``value`` is not an instance of the key's type.
        """
        who = provider or _caller_module()
        if key.name in self._providers:
            raise ConfigError(
                key.name,
                type(value).__qualname__,
                f"already provided by {self._providers[key.name]}; "
                f"{who} cannot provide it a second time",
            )
        if not getattr(key.kind, "_is_protocol", False) and not isinstance(value, key.kind):
            raise ConfigError(
                key.name,
                type(value).__qualname__,
                f"{who} provided it, but the key promises a {key.kind.__qualname__}",
            )
        self._values[cast("Extension[object]", key)] = value
        self._providers[key.name] = who

    def require(self, key: Extension[T], *, needed_by: str | None = None) -> T:
        """The value provided under ``key``.

        Raises:
            ConfigError: nothing provides ``key``; the error names who needed it.
        """
        try:
            return cast("T", self._values[cast("Extension[object]", key)])
        except KeyError:
            who = needed_by or _caller_module()
            provided = ", ".join(sorted(self._providers)) or "none"
            raise ConfigError(
                key.name,
                "(not provided)",
                f"{who} needs it, but no installed package provides it "
                f"(install the package that does before {who}; provided: {provided})",
            ) from None

    def get(self, key: Extension[T]) -> T:
        """Same as :meth:`require`; reads better at run time (``node_context().get(CACHE)``).

        A hit is one dict lookup (routes call this on every request); the caller
        is looked up only to name it in the error.
        """
        try:
            return cast("T", self._values[cast("Extension[object]", key)])
        except KeyError:
            return self.require(key, needed_by=_caller_module())

    def find(self, key: Extension[T]) -> T | None:
        """The value provided under ``key``, or ``None`` (for optional parts such as ``REDIS``)."""
        return cast("T | None", self._values.get(cast("Extension[object]", key)))

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def names(self) -> list[str]:
        """The names of every provided key, sorted."""
        return sorted(self._providers)

    def __repr__(self) -> str:
        return f"Extensions({self.names()})"


def _caller_module() -> str:
    """The module that called into this one (for error messages), skipping this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") in _PASS_THROUGH:
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__", "?")) if frame is not None else "?"
