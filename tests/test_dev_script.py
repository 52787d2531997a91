"""``./dev``, run for real against stub executables: what it installs, and when.

The script and a copy of ``pyproject.toml`` go into a temporary project; ``PYTHON``
is a stub that passes the version check and, for ``-m venv DIR``, creates
``DIR/bin/python``, ``ruff`` and ``mypy`` stubs. Every stub appends its name and
argv to a log, so a test reads what ``./dev`` ran (no real pip, no network).
``PATH`` holds only the tools the script needs and the stubs a test puts there,
so ``redis-server``, ``wrk``, ``apt-get``, ``sudo`` and ``id`` are whatever the test says.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"
# What ./dev itself calls, besides the stubs.
TOOLS = ("sha256sum", "cut", "sed", "sort", "paste", "dirname", "mkdir", "chmod", "cat", "env")

VERSION_CHECK = "PYTHON -c import sys; sys.exit(sys.version_info < (3, 11))"
# A stub: log "<name> <args>" and succeed.
STUB = f'#!{BASH}\nprintf "%s\\n" "${{0##*/}} $*" >> "$STUB_LOG"\n'
# The interpreter ./dev is given: logs as PYTHON, passes `-c <version check>`, makes venvs.
PYTHON_STUB = f"""#!{BASH}
printf "%s\\n" "PYTHON $*" >> "$STUB_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    for tool in python ruff mypy; do
        cat "$STUB_TEMPLATE" > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
fi
"""


class Project:
    """A temporary copy of ``dev`` and ``pyproject.toml``, with stubs on a restricted PATH."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "project"
        self.bin = root / "bin"
        self.log = root / "calls.log"
        self.dir.mkdir()
        self.bin.mkdir()
        shutil.copy2(REPO / "dev", self.dir / "dev")
        shutil.copy2(REPO / "pyproject.toml", self.dir / "pyproject.toml")
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found is not None, f"{tool} is needed to run ./dev"
            (self.bin / tool).symlink_to(found)
        self.template = root / "stub"
        self.template.write_text(STUB)
        self.python = root / "python-stub"
        self.python.write_text(PYTHON_STUB)
        self.python.chmod(0o755)
        self.stub("redis-server")
        self.stub("wrk")

    def stub(self, name: str, script: str = STUB) -> None:
        """Put an executable ``name`` on the PATH (by default one that logs and succeeds)."""
        path = self.bin / name
        path.write_text(script)
        path.chmod(0o755)

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()

    def dev(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``./dev ARGS`` in the project; the calls it made are in :meth:`calls`."""
        environment = {
            "PATH": str(self.bin),
            "PYTHON": str(self.python),
            "STUB_LOG": str(self.log),
            "STUB_TEMPLATE": str(self.template),
            "HOME": str(self.dir),
        }
        return subprocess.run(
            [BASH, str(self.dir / "dev"), *args],
            cwd=self.dir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def calls(self) -> list[str]:
        """The calls logged since the last time, then forget them."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return lines

    def installs(self) -> list[str]:
        """The editable installs (their ``.[extras]``) logged since the last time."""
        prefix = "python -m pip install -qq --editable "
        return [line.removeprefix(prefix) for line in self.calls() if line.startswith(prefix)]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_switching_commands_installs_only_what_is_missing(project: Project) -> None:
    done = project.dev("test", "-q")
    assert done.returncode == 0, done.stderr
    calls = project.calls()
    assert calls[:3] == [
        VERSION_CHECK,
        "PYTHON -m venv .venv",
        "python -m pip install -qq --upgrade pip",
    ]
    assert calls[3:] == [
        "python -m pip install -qq --editable .[test]",
        "ruff check .",
        "mypy ",
        "python -m pytest -q",
    ]

    done = project.dev("run", "--port", "9000")
    assert done.returncode == 0, done.stderr
    assert project.calls() == [VERSION_CHECK, "python -m runtime --port 9000"]  # no install

    assert project.dev("bench").returncode == 0
    assert project.installs() == [".[bench,test]"]  # the union, so `test` stays installed
    for command in ("test", "run", "bench"):
        assert project.dev(command).returncode == 0
        assert project.installs() == [], command


def test_a_changed_pyproject_reinstalls(project: Project) -> None:
    assert project.dev("test").returncode == 0
    assert project.installs() == [".[test]"]
    with (project.dir / "pyproject.toml").open("a") as file:
        file.write("\n# a change\n")
    assert project.dev("run").returncode == 0
    assert project.installs() == [".[run]"]  # the old install was for another pyproject.toml
    assert project.dev("test").returncode == 0
    assert project.installs() == [".[run,test]"]
    assert project.dev("run").returncode == 0
    assert project.installs() == []


def test_an_old_python_is_refused(project: Project) -> None:
    project.python.write_text(
        f'#!{BASH}\n[ "$1" = --version ] && echo "Python 3.10.4"\n[ "$1" = --version ]\n'
    )
    done = project.dev("run")
    assert done.returncode == 1
    assert "Switchyard needs Python 3.11 or newer" in done.stderr
    assert "Python 3.10.4" in done.stderr
    assert not (project.dir / ".venv").exists()


def test_without_redis_server_or_apt_get_it_names_the_package(project: Project) -> None:
    project.remove("redis-server")  # and there is no apt-get on this PATH
    project.stub("id", f"#!{BASH}\necho 0\n")  # root
    done = project.dev("test")
    assert done.returncode == 1
    assert "install the package redis-server with your system's package manager" in done.stderr
    assert not any(call.startswith("ruff") for call in project.calls())  # stopped first


def test_a_user_without_sudo_is_told_to_install_redis_server_as_root(project: Project) -> None:
    project.remove("redis-server")
    project.stub("id", f"#!{BASH}\necho 1000\n")  # not root, and no sudo on this PATH
    project.stub("apt-get")
    done = project.dev("test")
    assert done.returncode == 1
    assert "(as root: apt-get install redis-server)" in done.stderr
    assert not any(call.startswith("apt-get") for call in project.calls())


def test_a_user_with_passwordless_sudo_gets_redis_server_installed(project: Project) -> None:
    project.remove("redis-server")
    project.stub("id", f"#!{BASH}\necho 1000\n")
    project.stub("apt-get")
    sudo = f"""#!{BASH}
[ "$1" = -n ] && [ "$2" = true ] && exit 0
printf "%s\\n" "sudo $*" >> "$STUB_LOG"
shift
exec "$@"
"""
    project.stub("sudo", sudo)
    done = project.dev("test")
    assert done.returncode == 0, done.stderr
    calls = project.calls()
    assert [call for call in calls if call.startswith(("sudo", "apt-get"))] == [
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server",
        "apt-get install -y -qq redis-server",
    ]
    assert calls[-1] == "python -m pytest"  # then the tests run


def test_bench_installs_wrk_when_it_is_missing(project: Project) -> None:
    project.remove("wrk")
    project.stub("id", f"#!{BASH}\necho 0\n")  # root: apt-get directly
    project.stub("apt-get")
    done = project.dev("bench")
    assert done.returncode == 0, done.stderr
    assert "installing wrk (Debian package, for the HTTP benchmark)" in done.stderr
    calls = project.calls()
    assert [call for call in calls if call.startswith("apt-get")] == [
        "apt-get update -qq",
        "apt-get install -y -qq wrk",
    ]


def test_bench_without_wrk_or_a_way_to_install_it_names_the_package(project: Project) -> None:
    project.remove("wrk")
    project.stub("id", f"#!{BASH}\necho 1000\n")  # not root, and no sudo on this PATH
    done = project.dev("bench")
    assert done.returncode == 1
    assert done.stderr.endswith(
        "the HTTP benchmark loads its servers with wrk, and none is on PATH; install the "
        "package wrk (as root: apt-get install wrk), then run again\n"
    )
    assert not any("bench_" in call for call in project.calls())  # stopped before the benches


def test_an_unknown_command_prints_the_usage(project: Project) -> None:
    done = project.dev("frob")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ./dev run")
    assert project.calls() == []
