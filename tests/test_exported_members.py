"""The public surface and the import rules of the house (DESIGN.md, STYLE.md point 1).

* ``runtime.__all__`` is sorted and names exactly what the package exports;
* ``actors/`` and ``bench/`` import ``runtime`` only through its public names
  (``runtime``, ``runtime.testing``), never ``runtime._private``;
* nothing in ``runtime/`` imports ``actors/``, except the composition root
  ``runtime/node.py``;
* actor packages import neither Quart nor redis, except in their routes
  (``_routes.py``) and Redis storage (``_l2.py`` and ``_redis*.py``) modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import runtime
import runtime.testing

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _kind(name: str) -> int:
    if name.isupper():
        return 0
    return 1 if name[:1].isupper() else 2


@pytest.mark.parametrize("module", [runtime, runtime.testing])
def test_all_is_sorted_and_complete(module: object) -> None:
    exported = module.__all__  # type: ignore[attr-defined]
    # Sorted as ruff's RUF022 sorts it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(exported, key=lambda name: (_kind(name), name))
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("runtime")
        and not isinstance(value, type(runtime))
        and (module is runtime or name not in runtime.__all__)  # testing re-uses the core
    }
    assert public <= set(exported), public - set(exported)
    for name in exported:
        assert hasattr(module, name), name


@pytest.mark.parametrize("folder", ["actors", "bench", "tests/actors"])
def test_outside_code_uses_only_public_runtime_names(folder: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files(folder)
        for name in imports_of(path)
        if name.startswith("runtime._")
    ]
    assert offenders == []


def test_runtime_does_not_import_actors_except_the_composition_root() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files("runtime")
        if path.name != "node.py"
        for name in imports_of(path)
        if name == "actors" or name.startswith("actors.")
    ]
    assert offenders == []


def test_actors_keep_quart_and_redis_at_their_edges() -> None:
    edge_modules = ("_routes.py", "_l2.py", "_redis.py")
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files("actors")
        if path.name not in edge_modules
        for name in imports_of(path)
        if name.split(".")[0] in {"quart", "redis", "hypercorn"}
    ]
    assert offenders == []
