"""Remembering werkzeug's route matches, so a repeated path skips the state machine.

werkzeug matches a path against the URL map part by part; a route with a
converter (``/api/cache/<key>``) costs it a regex, a sort and a recursion per
part, about 10 us a request, where a static route costs 1 us. The same paths
come back again and again (hot cache keys, health probes), so the node's map
remembers its recent matches:

* only a successful match is remembered (a 404, 405 or redirect is raised
  again each time), and only for paths up to :data:`MAX_PATH_CHARS`;
* only when every converter of the rule is a pure one (werkzeug's own
  ``to_python`` of strings, numbers and UUIDs, or the identity of
  ``BaseConverter``): a converter of the app's own that looks things up is
  asked every time;
* at most ``entries`` matches, the oldest forgotten first; adding a rule
  forgets them all. Each hit gets its own copy of the values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.routing.converters import BaseConverter, NumberConverter, UUIDConverter

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from werkzeug.routing import Map, Rule

__all__ = ["MAX_PATH_CHARS", "memoize_matches"]

MAX_PATH_CHARS = 256
DEFAULT_ENTRIES = 512
_PURE = frozenset(
    {BaseConverter.to_python, NumberConverter.to_python, UUIDConverter.to_python}
)
_Key = tuple[str, str, str | None, bool]


class _MemoMatcher:
    """werkzeug's ``StateMachineMatcher`` with a bounded memo of its successful matches."""

    def __init__(self, inner: Any, entries: int) -> None:
        self._inner = inner
        self._entries = entries
        self._memo: dict[_Key, tuple[Rule, dict[str, Any]]] = {}

    @property
    def merge_slashes(self) -> bool:
        """The wrapped matcher's setting (werkzeug's ``Map.merge_slashes`` reads it)."""
        return bool(self._inner.merge_slashes)

    @merge_slashes.setter
    def merge_slashes(self, value: bool) -> None:
        self._memo.clear()
        self._inner.merge_slashes = value

    def add(self, rule: Rule) -> None:
        """Add a rule to the wrapped matcher; every remembered match is forgotten."""
        self._memo.clear()
        self._inner.add(rule)

    def update(self) -> None:
        """Re-sort the wrapped matcher (werkzeug calls it after adding rules)."""
        self._memo.clear()
        self._inner.update()

    def match(
        self, domain: str, path: str, method: str | None, websocket: bool
    ) -> tuple[Rule, MutableMapping[str, Any]]:
        """The wrapped matcher's answer, from the memo when this exact request was matched."""
        key = (domain, path, method, websocket)
        memo = self._memo
        hit = memo.get(key)
        if hit is not None:
            return hit[0], dict(hit[1])
        rule, values = self._inner.match(domain, path, method, websocket)
        if len(path) <= MAX_PATH_CHARS and all(
            type(converter).to_python in _PURE for converter in rule._converters.values()
        ):
            while len(memo) >= self._entries:
                del memo[next(iter(memo))]
            memo[key] = (rule, dict(values))
        return rule, values


def memoize_matches(url_map: Map, entries: int = DEFAULT_ENTRIES) -> None:
    """Make ``url_map`` remember up to ``entries`` successful matches (see the module).

    A map without werkzeug's matcher (another werkzeug) is left as it is.
    """
    inner = getattr(url_map, "_matcher", None)
    if inner is None or not hasattr(inner, "match") or isinstance(inner, _MemoMatcher):
        return
    url_map._matcher = _MemoMatcher(inner, entries)  # type: ignore[assignment]
