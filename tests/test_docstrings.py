"""Docstrings on the public API: every name in ``runtime.__all__`` and ``runtime.testing.__all__``.

A class counts with its public methods and properties (its own, and those it
inherits from classes defined in ``runtime``); a one-line docstring saying what
each is will do.
"""

from __future__ import annotations

import inspect
from typing import Any

import runtime
import runtime.testing


def _defined_in_runtime(value: Any) -> bool:
    return str(getattr(value, "__module__", "")).split(".")[0] == "runtime"


def _members(value: Any) -> dict[str, Any]:
    """``module.qualname`` -> object: an exported class or function, and a class's members."""
    members: dict[str, Any] = {}
    if not (inspect.isclass(value) or inspect.isfunction(value)) or not _defined_in_runtime(value):
        return members
    members[f"{value.__module__}.{value.__qualname__}"] = value
    if not inspect.isclass(value):
        return members
    for klass in value.__mro__:
        if not _defined_in_runtime(klass):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property) or inspect.isfunction(member):
                members[f"{klass.__module__}.{klass.__qualname__}.{name}"] = member
    return members


def _public_api() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module in (runtime, runtime.testing):
        for name in module.__all__:
            found |= _members(getattr(module, name))
    return found


def _undocumented() -> set[str]:
    return {name for name, member in _public_api().items() if not (member.__doc__ or "").strip()}


def test_the_public_api_is_walked() -> None:
    api = _public_api()
    for expected in (
        "runtime._node_process.NodeProcess.pid",  # a property
        "runtime._clock.ManualClock.advance",  # a method
        "runtime._configuration.Configuration.of",  # a classmethod
        "runtime.testing.Probe.handle",  # defined in runtime.testing itself
    ):
        assert expected in api, expected


def test_every_public_member_has_a_docstring() -> None:
    missing = sorted(_undocumented())
    assert not missing, f"public API without a docstring (one line will do): {missing}"

