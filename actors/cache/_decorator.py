"""``@cached``: cache an async function's results, on a :class:`Cache` or at module level.

``cache.cached(...)`` binds the decorator to one cache. The module-level
:func:`cached` binds it to none: each call finds the running node's cache,
so it can decorate functions at import time, as cashews users expect::

    import actors.cache

    @actors.cache.cached(ttl_seconds=60, key="user:{user_id}")
    async def load_user(user_id: int) -> dict[str, object]: ...

A call finds the cache of the node it runs in: inside a request (or any
Quart app context) through ``node_context().get(CACHE)``; elsewhere (an
actor, a background task, a test body) the cache that
:func:`actors.cache.install` installed in the task that assembled the node,
whose tasks inherit it. With no node, the call raises :class:`RuntimeError`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import msgspec

from runtime import Rejected, node_context

from ._facade import CACHE
from ._keys import validate_tags

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._facade import Cache

__all__ = ["cached", "caching_decorator", "current_cache", "installed_cache"]

P = ParamSpec("P")
R = TypeVar("R")

#: The sub-prefix of keys built automatically (``key=None``): ``{prefix}:cache:fn:...``.
AUTO_KEY_PREFIX = "fn"

_args_encoder = msgspec.msgpack.Encoder(order="deterministic")

installed_cache: ContextVar[Cache | None] = ContextVar("actors.cache.installed", default=None)
"""The cache ``install()`` added to the node assembled in this task (and its child tasks)."""


def current_cache() -> Cache:
    """The cache of the node this code runs in.

    Raises:
        RuntimeError: no node is running here (no app context and no installed cache).
        ConfigError: the node runs, but without ``actors.cache`` installed.
    """
    try:
        context = node_context()
    except RuntimeError:  # not within a Quart app context: no request here
        cache = installed_cache.get()
        if cache is None:
            raise RuntimeError(
                "@actors.cache.cached found no running node: call the decorated function "
                "inside a request of a node that installed actors.cache (or in one of its "
                "actors), or decorate with cache.cached(...) on the Cache from "
                "setup.require(CACHE)"
            ) from None
        return cache
    return context.get(CACHE)


def cached(
    *,
    ttl_seconds: float | None = None,
    key: str | Callable[..., str] | None = None,
    tags: Iterable[str] = (),
    stale_seconds: float = 0.0,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """:meth:`Cache.cached <actors.cache.Cache.cached>` for module level: no cache needed yet.

    Each call of the decorated function uses :func:`current_cache`; keys are
    exactly what ``key`` gives (``"user:{user_id}"`` stores ``user:1``).

    Raises (at call time):
        RuntimeError: the function was called where no node is running.
    """
    return caching_decorator(
        current_cache, ttl_seconds=ttl_seconds, key=key, tags=tags, stale_seconds=stale_seconds
    )


def caching_decorator(
    find_cache: Callable[[], Cache],
    *,
    ttl_seconds: float | None,
    key: str | Callable[..., str] | None,
    tags: Iterable[str],
    stale_seconds: float,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """The decorator of both ``cached`` forms; ``find_cache`` runs at each call."""
    tag_list = validate_tags(tags)
    prefix = AUTO_KEY_PREFIX if key is None else None

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        signature = inspect.signature(function)
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            cache = find_cache()
            cache_key = _function_key(name, signature, key, args, kwargs)
            result: R = await cache.get_or_set(
                cache_key,
                lambda: function(*args, **kwargs),
                ttl_seconds=ttl_seconds,
                stale_seconds=stale_seconds,
                tags=tag_list,
                prefix=prefix,
            )
            return result

        return wrapper

    return decorate


def _function_key(
    name: str,
    signature: inspect.Signature,
    key: str | Callable[..., str] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    if callable(key):
        return key(*args, **kwargs)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    if isinstance(key, str):
        return key.format(**bound.arguments)
    try:
        encoded = _args_encoder.encode(sorted(bound.arguments.items()))
    except TypeError as exc:
        raise Rejected(
            "unhashable_arguments",
            f"cannot build a cache key for {name}: {exc}; pass key= to @cached",
        ) from exc
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    return f"{name}:{digest}"
