"""The command line: ``--help``, ``--version``, ``token issue``/``check``; secrets never shown."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest

from runtime import TokenVerifier
from runtime.__main__ import main
from runtime._clock import SystemClock
from runtime.testing import ManualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "cli-test-secret-0123456789abcdef-xyz"  # long enough for HS256 without a warning
COUNTER_APP = "examples.counter_package:install"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SWITCHYARD_JWT_SECRET",
        "SWITCHYARD_JWT_AUDIENCE",
        "SWITCHYARD_JWT_ISSUER",
        "SWITCHYARD_APP",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``token`` configures logging as the node does; give the next test pytest's own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    showwarning = warnings.showwarning
    yield
    logging.captureWarnings(False)
    warnings.showwarning = showwarning
    root.handlers[:] = handlers
    root.setLevel(level)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def verify(token: str, audience: str | None = None) -> dict[str, object]:
    claims = TokenVerifier(SECRET, clock=SystemClock(), audience=audience).verify(token).claims
    return dict(claims)


def test_help_lists_the_settings_and_the_token_commands(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "--jwt-secret" in out  # the settings, from the settings loader
    assert "token issue --sub ID" in out
    assert "token check TOKEN" in out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert (status, out) == (0, f"switchyard {importlib.metadata.version('switchyard')}\n")


def test_settings_flags_may_come_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "--port", "9001", "token", "issue", "--sub", "alice", "--role", "admin",
        "--name", "Alice", "--jwt-secret", SECRET,
    )  # fmt: skip
    assert (status, err) == (0, "")
    claims = verify(out.strip())
    assert (claims["sub"], claims["roles"], claims["name"]) == ("alice", ["admin"], "Alice")


def test_a_bad_setting_before_the_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--port", "0", "token", "issue", "--sub", "a")
    assert (status, out) == (2, "")
    assert "--port has value '0'; expected an integer >= 1" in err


def test_token_shorthand_and_the_environment_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_JWT_SECRET", SECRET)
    monkeypatch.setenv("SWITCHYARD_JWT_AUDIENCE", "api")
    status, out, _ = run(capsys, "token", "--sub", "bob", "--ttl-seconds", "60")
    assert status == 0
    claims = verify(out.strip(), audience="api")
    assert claims["aud"] == "api"
    lifetime = int(str(claims["exp"])) - int(str(claims["iat"]))
    assert 60 <= lifetime <= 61  # iat is rounded down and exp up


@pytest.mark.parametrize(
    "args",
    [
        ("token", "--jwt-secret", SECRET),  # no --sub
        ("token", "issue", "--sub", "a", "--jwt-secret", SECRET, "--bogus", SECRET),
        ("token", "issue", f"--jwt-secret={SECRET}", "--sub"),
        ("token", "check", "--jwt-secret", SECRET),  # no TOKEN
        ("--jwt-secret", SECRET, "token", "issue", "--sub", "a", "extra", SECRET),
        ("--jwt-secret", SECRET, SECRET),  # the secret where a command would be
    ],
)
def test_a_usage_error_never_shows_the_secret(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    status, out, err = run(capsys, *args)
    assert status == 2
    assert err  # the error is reported...
    assert SECRET not in out + err  # ...without the secret


def test_without_a_secret_says_how_to_set_one(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "token", "issue", "--sub", "alice")
    assert (status, out) == (2, "")
    assert "set SWITCHYARD_JWT_SECRET (or pass --jwt-secret)" in err
    assert "None" not in err


def test_check_prints_the_claims_of_a_valid_token(capsys: pytest.CaptureFixture[str]) -> None:
    _, token, _ = run(capsys, "token", "issue", "--sub", "alice", "--jwt-secret", SECRET)
    status, out, err = run(capsys, "token", "check", token.strip(), "--jwt-secret", SECRET)
    assert (status, err) == (0, "")
    claims = msgspec.json.decode(out)
    assert claims["sub"] == "alice"
    assert set(claims) == {"sub", "iat", "exp"}


@pytest.mark.parametrize(
    ("token", "secret", "expected"),
    [
        (
            TokenVerifier(SECRET, clock=ManualClock()).issue("alice"),  # expired in 2023
            SECRET,
            "token_expired: token expired",
        ),
        (
            TokenVerifier(SECRET, clock=ManualClock(wall_start=4e9)).issue("alice"),
            SECRET + "-other",
            "invalid_token: token signature does not match the secret",
        ),
        ("not-a-jwt", SECRET, "malformed_token: token is not three base64url segments"),
    ],
)
def test_check_prints_the_precise_auth_error(
    capsys: pytest.CaptureFixture[str], token: str, secret: str, expected: str
) -> None:
    status, out, err = run(capsys, "token", "check", token, "--jwt-secret", secret)
    assert (status, out) == (1, "")
    assert err.startswith(f"python -m runtime token check: {expected}")
    assert token not in err and secret not in err


def test_an_unknown_command_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "--port", "9000", "frob")
    assert status == 2
    assert "unknown command 'frob'; the commands are: token" in err


def test_the_console_script_runs_the_same_command() -> None:
    script = Path(sys.executable).with_name("switchyard")
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (
        0,
        f"switchyard {importlib.metadata.version('switchyard')}\n",
    )


# -- the app hook's sections: in --help, and their flags at load time ----------------------


def test_help_lists_the_sections_of_the_app_hook_module(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "--app", COUNTER_APP, "--help")
    assert (status, err) == (0, "")
    assert "Counter (example):" in out  # the section's heading...
    assert "--counter-max-counters N" in out  # ...its flags and variables
    assert "SWITCHYARD_COUNTER_WINDOW_SECONDS" in out
    assert "Cache:" in out and "--jwt-secret" in out  # the built-in ones stay


def test_help_reads_the_app_hook_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_APP", COUNTER_APP)
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "SWITCHYARD_COUNTER_MAX_COUNTERS" in out
    monkeypatch.delenv("SWITCHYARD_APP")
    _, out, _ = run(capsys, "--help")
    assert "SWITCHYARD_COUNTER_MAX_COUNTERS" not in out  # it came from the hook's module


def test_an_app_section_flag_is_validated_at_load_time(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `token` never assembles a node: only a section known at load time sees the flag.
    monkeypatch.setenv("SWITCHYARD_APP", COUNTER_APP)
    status, out, err = run(
        capsys, "--counter-max-counters", "0", "token", "issue", "--sub", "a",
        "--jwt-secret", SECRET,
    )  # fmt: skip
    assert (status, out) == (2, "")
    assert "--counter-max-counters has value '0'; expected an integer >= 1" in err


def test_an_app_hook_that_cannot_be_imported_is_a_config_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "--app", "no_such_module_xyz:setup", "--help")
    assert (status, out) == (2, "")
    assert err.startswith(
        "python -m runtime: configuration error: --app has value 'no_such_module_xyz:setup'; "
        "module 'no_such_module_xyz' cannot be imported"
    )


def test_help_with_an_app_hook_in_a_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", f"--app={COUNTER_APP}", "--help"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--counter-window-seconds NUMBER" in done.stdout


# -- unknown flags, and warnings under --log-format json -----------------------------------


def test_an_unknown_flag_is_named_without_a_made_up_value_or_hint() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--bogus"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.rstrip().endswith(
        "configuration error: unknown flag --bogus; see `python -m runtime --help` for the list"
    )
    assert "has value" not in done.stderr and "did you mean" not in done.stderr


def test_a_short_secret_is_refused_by_token_issue() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "--log-format", "json", "token", "issue",
         "--sub", "alice", "--jwt-secret", "short"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no token
    assert done.stderr.rstrip().endswith(
        "--jwt-secret has value '**********'; it is 5 bytes; HS256 needs at least 32 "
        "(RFC 7518 §3.2), such as 64 random characters"
    )
    assert "short" not in done.stderr.replace("--jwt-secret", "")
