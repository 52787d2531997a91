"""The command line: ``--help``, ``--version``, ``token issue``/``check``; secrets never shown."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from runtime import TokenVerifier
from runtime.__main__ import main
from runtime._clock import SystemClock
from runtime.testing import ManualClock

SECRET = "cli-test-secret-0123456789abcdef-xyz"  # long enough for HS256 without a warning


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWITCHYARD_JWT_SECRET", "SWITCHYARD_JWT_AUDIENCE", "SWITCHYARD_JWT_ISSUER"):
        monkeypatch.delenv(name, raising=False)


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
