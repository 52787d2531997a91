"""Tests for the memo of route matches: the same answers as werkzeug's matcher, bounded."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import BaseConverter, Map, Rule

from runtime._route_memo import MAX_PATH_CHARS, memoize_matches


class CountingConverter(BaseConverter):
    """A converter of the app's own (not a pure one): it must be asked on every match."""

    calls = 0

    def to_python(self, value: str) -> Any:
        CountingConverter.calls += 1
        return [value]  # mutable: sharing it between requests would be a bug


def memo_map(entries: int = 512) -> Map:
    url_map = Map(
        [
            Rule("/items/<name>", endpoint="item", methods=["GET"]),
            Rule("/n/<int:n>", endpoint="number"),
            Rule("/c/<counting:value>", endpoint="counting"),
            Rule("/static-only", endpoint="static"),
        ],
        converters={"counting": CountingConverter},
    )
    memoize_matches(url_map, entries)
    return url_map


def match(url_map: Map, path: str, method: str = "GET") -> tuple[str, dict[str, Any]]:
    endpoint, values = url_map.bind("example.com").match(path, method=method)
    return str(endpoint), dict(values)


def memo_size(url_map: Map) -> int:
    return len(url_map._matcher._memo)  # type: ignore[attr-defined]


def test_a_repeated_path_gets_the_same_match_and_its_own_values() -> None:
    url_map = memo_map()
    adapter = url_map.bind("example.com")
    for _ in range(2):  # the first answer is werkzeug's, the second the memo's
        _, values = adapter.match("/items/a", method="GET")
        values["name"] = "changed by a request"  # type: ignore[index]
    assert match(url_map, "/items/a") == ("item", {"name": "a"})
    assert match(url_map, "/n/42") == ("number", {"n": 42})
    assert match(url_map, "/n/42") == ("number", {"n": 42})
    assert memo_size(url_map) == 2


def test_failures_are_never_remembered() -> None:
    url_map = memo_map()
    for _ in range(2):
        with pytest.raises(NotFound):
            match(url_map, "/nowhere")
        with pytest.raises(MethodNotAllowed):
            match(url_map, "/items/a", method="POST")
        with pytest.raises(NotFound):
            match(url_map, "/n/not-a-number")
    assert memo_size(url_map) == 0
    assert match(url_map, "/items/a", method="GET") == ("item", {"name": "a"})


def test_a_rule_added_later_is_seen_by_a_path_matched_before() -> None:
    url_map = memo_map()
    assert match(url_map, "/items/special") == ("item", {"name": "special"})
    url_map.add(Rule("/items/special", endpoint="special"))
    assert match(url_map, "/items/special") == ("special", {})


def test_a_converter_of_the_apps_own_is_asked_every_time() -> None:
    url_map = memo_map()
    CountingConverter.calls = 0
    assert match(url_map, "/c/x") == ("counting", {"value": ["x"]})
    assert match(url_map, "/c/x") == ("counting", {"value": ["x"]})
    assert (CountingConverter.calls, memo_size(url_map)) == (2, 0)


def test_the_memo_is_bounded_and_skips_long_paths() -> None:
    url_map = memo_map(entries=2)
    for name in ("a", "b", "c"):
        match(url_map, f"/items/{name}")
    assert memo_size(url_map) == 2
    long_name = "x" * MAX_PATH_CHARS
    assert match(url_map, f"/items/{long_name}") == ("item", {"name": long_name})
    assert memo_size(url_map) == 2
    assert url_map._matcher._memo.keys() == {  # type: ignore[attr-defined]
        ("", "/items/b", "GET", False),
        ("", "/items/c", "GET", False),
    }


def test_memoizing_twice_wraps_once() -> None:
    url_map = memo_map()
    matcher = url_map._matcher
    memoize_matches(url_map)
    assert url_map._matcher is matcher
