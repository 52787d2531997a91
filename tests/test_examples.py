"""Every file under ``examples/`` runs here, and the README shows them as they are.

* Setup hooks are assembled in process (``open_app``) and exercised over the
  test client, or over real Hypercorn and TCP for the WebSocket one; every
  hook also boots behind the default composition root, as ``--app`` does.
* ``examples/test_*.py`` run through pytest in a subprocess, once with a user
  project's configuration (strict asyncio mode, strict markers, warnings as
  errors, outside this repository) and once with this repository's.
* One end-to-end test runs ``python -m runtime --app examples.greeter_node:setup``.
* :data:`COVERAGE` names the tests of each example; an example file it does
  not name fails :func:`test_every_example_file_is_covered`.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import runtime.node
from actors.queue import QUEUE
from actors.socket_hub.client import HubClientError
from examples import blueprint, counter_package, greeter_node, hub_chat, websocket_echo
from examples.counter_package import (
    COUNTER,
    COUNTER_SETTINGS,
    CounterActor,
    CounterGet,
    CounterGetReply,
    CounterIncrement,
    CounterIncrementReply,
    CounterSettings,
)
from runtime import ChildSpec, NodeSetup, Rejected, Secret, Settings, SystemClock, TokenVerifier
from runtime.testing import ManualClock, NodeProcess, open_app, open_system, serve_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SECRET = "a-secret-for-tests-only-32-bytes-long"

#: Which tests of this module exercise each file of ``examples/``. A new example needs a
#: test here and an entry in this mapping, or ``test_every_example_file_is_covered`` fails.
COVERAGE: dict[str, tuple[str, ...]] = {
    "blueprint.py": (
        "test_blueprint_runs_the_three_job_types_with_progress_for_their_user",
        "test_every_setup_hook_example_boots_behind_the_default_node",
    ),
    "cache_site.py": (
        "actors/cache/test_examples.py::"
        "test_cache_site_serves_users_through_the_cache_and_forgets_them",
    ),
    "__init__.py": ("test_examples_is_importable_and_checked_but_not_in_the_wheel",),
    "greeter_node.py": (
        "test_greeter_node_greets_a_caller_with_a_token",
        "test_greeter_node_runs_under_python_m_runtime",
        "test_every_setup_hook_example_boots_behind_the_default_node",
    ),
    "counter_package.py": (
        "test_counter_package_counts_over_http_and_reports_statistics",
        "test_counter_package_window_rolls_over_on_the_nodes_clock",
        "test_counter_actor_is_driven_by_its_messages_alone",
        "test_every_setup_hook_example_boots_behind_the_default_node",
        "test_readme_code_blocks_naming_an_example_match_its_file",  # its settings section
        "runtime/test_cli.py::test_help_lists_the_sections_of_the_app_hook_module",
    ),
    "hub_chat.py": (
        "test_hub_chat_meets_in_a_project_room_behind_the_default_node",
        "test_every_setup_hook_example_boots_behind_the_default_node",
        "test_readme_code_blocks_naming_an_example_match_its_file",
    ),
    "websocket_echo.py": (
        "test_websocket_echo_over_hypercorn",
        "test_every_setup_hook_example_boots_behind_the_default_node",
    ),
    "test_embedding.py": ("test_example_test_files_pass_under_a_users_and_this_repos_config",),
    "test_faults.py": (
        "test_example_test_files_pass_under_a_users_and_this_repos_config",
        "test_readme_code_blocks_naming_an_example_match_its_file",
    ),
}

HOOK_NAMES = ("setup", "install")


def _example_files() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


def _hook_modules() -> list[str]:
    """The example modules with a setup hook (``setup`` or ``install``), by file name."""
    hooks = []
    for name in _example_files():
        if name == "__init__.py" or name.startswith("test_"):
            continue
        module = importlib.import_module(f"examples.{name.removesuffix('.py')}")
        if any(callable(getattr(module, hook, None)) for hook in HOOK_NAMES):
            hooks.append(name)
    return hooks


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _verifier() -> TokenVerifier:
    return TokenVerifier(SECRET, clock=SystemClock())


# -- coverage and hygiene --------------------------------------------------------------------


def test_every_example_file_is_covered() -> None:
    files = _example_files()
    unmapped = [name for name in files if name not in COVERAGE]
    assert not unmapped, (
        f"examples/{unmapped[0]} is exercised by no test: add one to tests/test_examples.py "
        "and name it in COVERAGE"
    )
    stale = sorted(set(COVERAGE) - set(files))
    assert not stale, f"COVERAGE names examples that no longer exist: {stale}"
    tests = {name for name, value in globals().items() if name.startswith("test_")}
    for name, covering in COVERAGE.items():
        missing = [test for test in covering if test not in tests and not _elsewhere(test)]
        assert covering and not missing, f"COVERAGE[{name!r}] names no test or unknown {missing}"


def _elsewhere(test: str) -> bool:
    """Whether ``path::name`` (a path under ``tests/``) names a test function in that file."""
    path, _, name = test.partition("::")
    file = ROOT / "tests" / path
    if not name or not file.is_file():
        return False
    tree = ast.parse(file.read_text(), filename=str(file))
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def test_examples_is_importable_and_checked_but_not_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(fnmatch.fnmatch("examples", pattern) for pattern in packaged), packaged
    assert "examples" in config["tool"]["mypy"]["files"]
    excluded = config["tool"]["ruff"].get("exclude", []) + config["tool"]["ruff"].get(
        "extend-exclude", []
    )
    assert not any(fnmatch.fnmatch("examples", pattern) for pattern in excluded), excluded
    assert {"counter_package.py", "greeter_node.py", "websocket_echo.py"} <= set(_hook_modules())


def _readme_code_blocks() -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of every fenced code block in README.md."""
    readme = (ROOT / "README.md").read_text()
    fence = re.compile(r"^```([\w+-]*)\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
    return [
        (readme.count("\n", 0, match.start()) + 1, match[1], match[2])
        for match in fence.finditer(readme)
    ]


def _readme_blocks() -> list[tuple[str, str]]:
    """``(file, code)`` of each README ``python`` block: its ``# examples/<file>`` and the rest.

    Every ``python`` block must name the example file it is taken from, on its
    first line; blocks in other languages (``sh``) and plain text are exempt.
    """
    named = []
    for line, language, block in _readme_code_blocks():
        if language not in ("python", "py"):
            continue
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# (examples/[\w/]+\.py)", first.strip())
        assert match, (
            f"README.md line {line}: a python block must start with `# examples/<file>.py` "
            f"and be taken from that file, which CI runs; this one starts with {first!r}"
        )
        named.append((match[1], rest))
    return named


def test_every_readme_python_block_is_taken_from_an_example_file() -> None:
    blocks = _readme_blocks()  # fails on a python block that names no file
    python = [b for b in _readme_code_blocks() if b[1] in ("python", "py")]
    assert len(blocks) == len(python) >= 6
    for line, language, block in _readme_code_blocks():
        if language:
            continue
        try:  # an untagged block is text (the diagram), never Python that escapes the check
            ast.parse(block)
        except SyntaxError:
            continue
        raise AssertionError(f"README.md line {line}: untagged block is Python; tag it python")


def test_readme_code_blocks_naming_an_example_match_its_file() -> None:
    blocks = _readme_blocks()
    shown = {path for path, _ in blocks}
    assert {
        "examples/counter_package.py",
        "examples/greeter_node.py",
        "examples/test_embedding.py",
        "examples/test_faults.py",
        "examples/websocket_echo.py",
    } <= shown, shown
    for path, code in blocks:
        assert (ROOT / path).is_file(), f"README shows {path}, which does not exist"
        text = (ROOT / path).read_text()
        assert code.strip() and code in text, (
            f"README's block for {path} differs from the file; copy the file's text into it"
        )


# -- greeter_node.py -----------------------------------------------------------------------


async def test_greeter_node_greets_a_caller_with_a_token() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    async with open_app(settings, compose=greeter_node.setup) as (app, _):
        client = app.test_client()
        refused = await client.get("/greet/ada")
        assert refused.status_code == 401
        assert (await refused.get_json())["error"]["code"] == "missing_token"
        response = await client.get("/greet/ada", headers=_headers(_verifier().issue("ada")))
        assert response.status_code == 200
        assert await response.get_json() == {"greeting": "hello ada"}


@pytest.mark.e2e
def test_greeter_node_runs_under_python_m_runtime() -> None:
    node = NodeProcess(
        {"SWITCHYARD_JWT_SECRET": SECRET}, ["--app", "examples.greeter_node:setup"], cwd=str(ROOT)
    )
    with node, httpx.Client(base_url=node.url, timeout=10) as client:
        assert client.get("/greet/ada").status_code == 401
        token = _verifier().issue("ada")
        response = client.get("/greet/ada", headers=_headers(token))
        assert response.status_code == 200
        assert response.json() == {"greeting": "hello ada"}
        assert client.get("/readyz").json()["actors"]["greeter"] == "running"


# -- every hook, behind the default node ---------------------------------------------------


def _behind_default_node(
    hook: Callable[[NodeSetup], object],
) -> Callable[[NodeSetup], Awaitable[None]]:
    async def compose(setup: NodeSetup) -> None:
        runtime.node.compose(setup)
        outcome = hook(setup)
        if inspect.isawaitable(outcome):
            await outcome

    return compose


@pytest.mark.parametrize("name", _hook_modules())
async def test_every_setup_hook_example_boots_behind_the_default_node(name: str) -> None:
    module = importlib.import_module(f"examples.{name.removesuffix('.py')}")
    hook = next(getattr(module, h) for h in HOOK_NAMES if callable(getattr(module, h, None)))
    async with open_app(compose=_behind_default_node(hook)) as (app, _):
        ready = await app.test_client().get("/readyz")
        assert ready.status_code == 200, await ready.get_json()


# -- counter_package.py --------------------------------------------------------------------


async def test_counter_package_counts_over_http_and_reports_statistics() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    needed: list[object] = []

    def compose(setup: NodeSetup) -> None:
        counter_package.install(setup)
        needed.append(setup.require(COUNTER))  # how another package finds it

    sections = {COUNTER_SETTINGS: CounterSettings(max_counters=2)}
    async with open_app(settings, compose=compose, sections=sections) as (app, context):
        assert needed == [context.get(COUNTER)]
        client = app.test_client()
        user = _headers(_verifier().issue("ada"))
        assert (await client.post("/api/counters/a", json={})).status_code == 401
        first = await client.post("/api/counters/a", json={"by": 2}, headers=user)
        assert await first.get_json() == {"total": 2}
        second = await client.post("/api/counters/a", json={}, headers=user)
        assert await second.get_json() == {"total": 3}
        read = await client.get("/api/counters/a", headers=user)
        assert await read.get_json() == {"total": 3, "in_window": 3}
        invalid = await client.post("/api/counters/a", json={"by": 0}, headers=user)
        assert invalid.status_code == 422
        assert (await client.post("/api/counters/b", json={}, headers=user)).status_code == 200
        full = await client.post("/api/counters/c", json={}, headers=user)
        assert full.status_code == 400
        assert (await full.get_json())["error"]["code"] == "too_many_counters"
        admin = _headers(_verifier().issue("root", roles=["admin"]))
        statistics = await (await client.get("/api/statistics", headers=admin)).get_json()
        assert statistics["counter"] == {
            "counters": 2,
            "increments": 3,
            "rejected": 1,
            "windows": 0,
        }


async def test_counter_package_window_rolls_over_on_the_nodes_clock() -> None:
    clock = ManualClock()
    sections = {COUNTER_SETTINGS: CounterSettings(window_seconds=10.0)}
    async with open_app(compose=counter_package.install, clock=clock, sections=sections) as (
        _,
        context,
    ):
        counter = context.get(COUNTER)
        assert await counter.increment("a", by=5) == 5
        clock.advance(9.0)
        await anyio.wait_all_tasks_blocked()
        assert await counter.get("a") == CounterGetReply(total=5, in_window=5)
        clock.advance(1.0)
        await anyio.wait_all_tasks_blocked()  # the timer told the actor _WindowElapsed
        assert await counter.get("a") == CounterGetReply(total=5, in_window=0)
        assert (await counter.statistics()).windows == 1


async def test_counter_actor_is_driven_by_its_messages_alone() -> None:
    settings = CounterSettings(max_counters=1)
    spec = ChildSpec("counter", lambda: CounterActor(settings, counter_package.Counter()))
    async with open_system([spec]) as refs:
        reply: CounterIncrementReply = await refs["counter"].ask(CounterIncrement(name="a", by=4))
        assert reply == CounterIncrementReply(total=4)
        assert await refs["counter"].ask(CounterGet(name="a")) == CounterGetReply(
            total=4, in_window=4
        )
        with pytest.raises(Rejected) as caught:
            await refs["counter"].ask(CounterIncrement(name="b"))
        assert caught.value.code == "too_many_counters"


# -- blueprint.py --------------------------------------------------------------------------


async def test_blueprint_runs_the_three_job_types_with_progress_for_their_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWITCHYARD_EXAMPLE_WORK_SCALE", "0")  # the stages' sleeps, instant

    def compose(node: NodeSetup) -> None:
        runtime.node.compose(node)
        blueprint.setup(node)

    async with open_app(compose=compose) as (_, context):
        jobs = context.get(QUEUE)
        email = await jobs.enqueue(
            "send-email", {"to": "ada@example.com", "subject": "Hi"}, user_id="ada"
        )
        analysis = await jobs.enqueue(
            "ai-analysis", {"text": "I love it, great work"}, user_id="ada"
        )
        upload = await jobs.enqueue(
            "file-processing", {"filename": "a.mp4", "size_bytes": 3_000_000}, user_id="ada"
        )
        with pytest.raises(Rejected) as refused:
            await jobs.enqueue("send-email", {"to": "not an address", "subject": "Hi"})
        assert refused.value.code == "invalid_payload"
        done = [await jobs.wait(added.id, timeout=20) for added in (email, analysis, upload)]
        assert [(job.queue, job.state) for job in done] == [
            ("email", "completed"),
            ("ai-processing", "completed"),
            ("file-processing", "completed"),
        ]
        results = [json.loads(job.result or b"null") for job in done]
        assert results[0]["to"] == "ada@example.com"
        assert results[1] == {"analysis": "sentiment", "words": 5, "score": 1.0}
        assert results[2] == {"filename": "a.mp4", "operation": "scan", "chunks": 3}
        assert [job.progress.stage if job.progress else None for job in done] == [
            "send",
            "summarise",
            "upload",
        ]


# -- websocket_echo.py ---------------------------------------------------------------------


async def test_hub_chat_meets_in_a_project_room_behind_the_default_node() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    verifier = _verifier()
    alice = verifier.issue("alice", name="Alice", projects=["apollo"])
    bob = verifier.issue("bob", name="Bob", projects=["apollo"])
    carol = verifier.issue("carol", name="Carol")

    def compose(node: NodeSetup) -> None:
        runtime.node.compose(node)
        hub_chat.setup(node)

    async with open_app(settings, compose=compose) as (app, _), serve_app(app) as url:
        ws_url = f"ws{url.removeprefix('http')}/ws"
        assert await hub_chat.chat(ws_url, alice, bob) == [
            "Alice: lift-off at noon",
            "refused: forbidden",
        ]
        with pytest.raises(HubClientError) as refused:  # not in the project
            await hub_chat.chat(ws_url, carol, bob)
        assert refused.value.code == "forbidden"


async def test_websocket_echo_over_hypercorn() -> None:
    settings = Settings(jwt_secret=Secret(SECRET))
    token = _verifier().issue("ada")
    async with open_app(settings, compose=websocket_echo.setup) as (app, _), serve_app(app) as url:
        ws_url = f"ws{url.removeprefix('http')}/ws/echo"
        async with connect(f"{ws_url}?token={token}", open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "echo.say", "text": "hi", "ref": 1}))
            assert json.loads(await ws.recv()) == {
                "type": "echo.said",
                "text": "hi",
                "by": "ada",
                "ref": 1,
            }
            bad_frames = [
                ("not json", "malformed_frame"),
                (json.dumps({"type": "echo.shout"}), "unknown_type"),
                (json.dumps({"type": "echo.say"}), "validation_error"),
                (json.dumps({"type": "echo.say", "text": " ", "ref": "r2"}), "empty_text"),
            ]
            for frame, code in bad_frames:
                await ws.send(frame)
                error = json.loads(await ws.recv())
                assert (error["type"], error["code"]) == ("error", code), error
            assert error["ref"] == "r2"  # the error names the frame at fault
            await ws.send(json.dumps({"type": "echo.ping"}))  # the session went on
            assert json.loads(await ws.recv()) == {"type": "echo.pong"}

        async with connect(ws_url, open_timeout=10) as ws:  # first-frame authentication
            await ws.send(json.dumps({"type": "auth", "token": token}))
            await ws.send(json.dumps({"type": "echo.say", "text": "again"}))
            assert json.loads(await ws.recv())["by"] == "ada"

        async with connect(ws_url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "token": "not.a.token"}))
            assert json.loads(await ws.recv())["code"] == "malformed_token"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_url}?token=not.a.token", open_timeout=10):
                pass
        assert refused.value.response.status_code == 401


# -- examples/test_*.py, as a user's project runs them -------------------------------------

USER_PYTEST_INI = """\
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
addopts = --strict-markers --strict-config
filterwarnings = error
"""


def _test_count(path: Path) -> int:
    tree = ast.parse(path.read_text())
    return sum(
        isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test_")
        for node in tree.body
    )


@pytest.mark.parametrize("name", [n for n in _example_files() if n.startswith("test_")])
def test_example_test_files_pass_under_a_users_and_this_repos_config(
    name: str, tmp_path: Path
) -> None:
    """A user's project: a copy of the file, its own pytest.ini, Switchyard on the path."""
    user = tmp_path / "project"
    user.mkdir()
    (user / "pytest.ini").write_text(USER_PYTEST_INI)
    shutil.copy(EXAMPLES / name, user / name)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHYARD_", "PYTEST_"))}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs"]
    runs = {
        "a user's project": subprocess.Popen(
            [*command, name],
            cwd=user,
            env=environ | {"PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        "this repository": subprocess.Popen(
            [*command, f"examples/{name}"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
    }
    expected = _test_count(EXAMPLES / name)
    assert expected > 0
    for where, process in runs.items():
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, f"{name} in {where}:\n{output}"
        summary = output.strip().splitlines()[-1]
        assert re.fullmatch(rf"{expected} passed in [\d.]+s", summary), f"{where}: {output}"
