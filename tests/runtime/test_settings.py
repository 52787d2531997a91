"""Settings: defaults, sources and precedence, exact error texts, secrets and ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from actors.cache import CACHE_SETTINGS
from actors.cache._settings import CacheSettings
from runtime import ConfigError, Secret, Settings, load_configuration, load_settings
from runtime._configuration import build_parser
from runtime._settings import redact_url

FIELDS = Settings.__struct_fields__
ALGORITHMS = (
    "HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA"
)


def env_name(field: str) -> str:
    return "SWITCHYARD_" + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def test_defaults() -> None:
    settings = load_settings([], {})
    assert settings == Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.redis_url is None
    assert settings.redis_health_interval_seconds == 1.0
    assert settings.redis_reconnect_max_seconds == 0.5
    assert settings.jwt_secret is None
    assert settings.jwt_algorithms == ("HS256",)
    assert settings.jwt_audience is None
    assert settings.jwt_issuer is None
    assert settings.jwt_leeway_seconds == 0.0
    assert settings.cors_origins == ()
    assert settings.max_body_bytes == 1_048_576
    assert settings.shutdown_grace_seconds == 10.0
    assert settings.ask_timeout_seconds == 5.0
    assert settings.mailbox_size == 1024
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.app is None
    assert settings.redis_prefix == "switchyard"
    assert settings.redacted_redis_url is None


def test_settings_is_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_environment_values_are_converted() -> None:
    settings = load_settings(
        [],
        {
            "SWITCHYARD_HOST": "0.0.0.0",
            "SWITCHYARD_PORT": "9000",
            "SWITCHYARD_ASK_TIMEOUT_SECONDS": "2.5",
            "SWITCHYARD_SHUTDOWN_GRACE_SECONDS": "0",
            "SWITCHYARD_JWT_ALGORITHMS": "HS256, HS384,",
            "SWITCHYARD_CORS_ORIGINS": "https://example.com,http://localhost:3000,http://[::1]:8080",
            "SWITCHYARD_LOG_LEVEL": "debug",
            "SWITCHYARD_LOG_FORMAT": "JSON",
            "SWITCHYARD_APP": "myapp.node:create_app",
            "SWITCHYARD_JWT_AUDIENCE": "switchyard",
            "SWITCHYARD_JWT_ISSUER": "",
            "SWITCHYARD_REDIS_URL": "rediss://:s3cret@redis.internal:6380/2",
            "SWITCHYARD_JWT_SECRET": "jwt-key-" + "k" * 40,  # HS384: at least 48 bytes
            "OTHER_PORT": "not ours, ignored",
        },
    )
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.ask_timeout_seconds == 2.5
    assert settings.shutdown_grace_seconds == 0.0
    assert settings.jwt_algorithms == ("HS256", "HS384")
    assert settings.cors_origins == (
        "https://example.com",
        "http://localhost:3000",
        "http://[::1]:8080",
    )
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.app == "myapp.node:create_app"
    assert settings.jwt_audience == "switchyard"
    assert settings.jwt_issuer is None  # an empty optional setting means "unset"
    assert settings.redis_url == Secret("rediss://:s3cret@redis.internal:6380/2")
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.reveal() == "jwt-key-" + "k" * 40
    assert settings.redacted_redis_url == "rediss://:***@redis.internal:6380/2"


def test_empty_list_setting_is_an_empty_tuple() -> None:
    assert load_settings([], {"SWITCHYARD_CORS_ORIGINS": ""}).cors_origins == ()
    assert load_settings(["--cors-origins", "*"], {}).cors_origins == ("*",)


def test_flags_override_environment_which_overrides_defaults() -> None:
    environ = {"SWITCHYARD_PORT": "9000", "SWITCHYARD_HOST": "0.0.0.0"}
    settings = load_settings(["--port", "9100", "--mailbox-size=16"], environ)
    assert settings.port == 9100  # flag beats variable
    assert settings.host == "0.0.0.0"  # variable beats default
    assert settings.mailbox_size == 16  # flag beats default
    assert settings.redis_prefix == "switchyard"  # default


def test_none_reads_the_process_argv_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_PORT", "9000")
    monkeypatch.setenv("SWITCHYARD_REDIS_PREFIX", "from-env")
    monkeypatch.setattr(sys, "argv", ["python -m runtime", "--port", "9001"])
    settings = load_settings()
    assert (settings.port, settings.redis_prefix) == (9001, "from-env")


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"SWITCHYARD_PORT": "abc"}, "SWITCHYARD_PORT has value 'abc'; expected an integer"),
        (["--port", "70000"], {}, "--port has value '70000'; expected an integer <= 65535"),
        (["--port=0"], {}, "--port has value '0'; expected an integer >= 1"),
        (
            [],
            {"SWITCHYARD_ASK_TIMEOUT_SECONDS": "-1"},
            "SWITCHYARD_ASK_TIMEOUT_SECONDS has value '-1'; expected a number > 0",
        ),
        (
            ["--shutdown-grace-seconds", "-0.5"],
            {},
            "--shutdown-grace-seconds has value '-0.5'; expected a number >= 0",
        ),
        (
            [],
            {"SWITCHYARD_JWT_LEEWAY_SECONDS": "soon"},
            "SWITCHYARD_JWT_LEEWAY_SECONDS has value 'soon'; expected a number",
        ),
        (
            ["--jwt-leeway-seconds", "301"],
            {},
            "--jwt-leeway-seconds has value '301'; expected a number <= 300",
        ),
        (
            [],
            {"SWITCHYARD_JWT_ALGORITHMS": "none"},
            "SWITCHYARD_JWT_ALGORITHMS has value 'none'; 'none' is refused because it "
            f"accepts unsigned tokens; use one of {ALGORITHMS}",
        ),
        (
            ["--jwt-algorithms", "HS256,HS257"],
            {},
            "--jwt-algorithms has value 'HS256,HS257'; 'HS257' is not a JWS algorithm; "
            f"use one of {ALGORITHMS}",
        ),
        (
            ["--jwt-algorithms", "hs256"],
            {},
            "--jwt-algorithms has value 'hs256'; 'hs256' is not a JWS algorithm (case matters); "
            "did you mean HS256?",
        ),
        (
            ["--jwt-algorithms", ","],
            {},
            "--jwt-algorithms has value ','; expected at least one item",
        ),
        (
            [],
            {"SWITCHYARD_CORS_ORIGINS": "https://ok.example,example.com"},
            "SWITCHYARD_CORS_ORIGINS has value 'https://ok.example,example.com'; "
            "'example.com' is not an origin; expected scheme://host[:port] with no path, "
            "such as https://example.com or http://localhost:3000, or '*'",
        ),
        (
            ["--cors-origins", "https://example.com/"],
            {},
            "--cors-origins has value 'https://example.com/'; 'https://example.com/' is not "
            "an origin; expected scheme://host[:port] with no path, such as "
            "https://example.com or http://localhost:3000, or '*'",
        ),
        (
            [],
            {"SWITCHYARD_APP": "myapp.node.create_app"},
            "SWITCHYARD_APP has value 'myapp.node.create_app'; expected 'module:function', "
            "such as 'myapp.node:create_app'",
        ),
        (
            ["--app", "myapp:"],
            {},
            "--app has value 'myapp:'; expected 'module:function', such as 'myapp.node:create_app'",
        ),
        (
            ["--log-level", "trace"],
            {},
            "--log-level has value 'trace'; expected one of DEBUG, INFO, WARNING, ERROR (any case)",
        ),
        (
            [],
            {"SWITCHYARD_LOG_FORMAT": "xml"},
            "SWITCHYARD_LOG_FORMAT has value 'xml'; expected one of text, json (any case)",
        ),
        (
            [],
            {"SWITCHYARD_REDIS_PREFIX": "my cache"},
            "SWITCHYARD_REDIS_PREFIX has value 'my cache'; expected no whitespace, "
            "such as 'switchyard'",
        ),
        (
            [],
            {"SWITCHYARD_CACHE_PREFIX": "my cache"},  # the deprecated alias is checked the same
            "SWITCHYARD_CACHE_PREFIX has value 'my cache'; expected no whitespace, "
            "such as 'switchyard'",
        ),
        (
            ["--redis-prefix", ""],
            {},
            "--redis-prefix has value ''; expected a non-empty string",
        ),
        (
            ["--redis-prefix", "app*"],
            {},
            "--redis-prefix has value 'app*'; expected no glob character (* ? [ ] \\), found '*'",
        ),
        (
            ["--redis-prefix", "x" * 65],
            {},
            f"--redis-prefix has value '{'x' * 65}'; expected at most 64 characters",
        ),
        (
            [],
            {"SWITCHYARD_MAILBOX_SIZE": "1.5"},
            "SWITCHYARD_MAILBOX_SIZE has value '1.5'; expected an integer written in digits, "
            "such as 1024",
        ),
    ],
)
def test_config_error_names_the_source_and_the_value(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(argv, environ)
    assert str(info.value) == message


def test_config_error_keeps_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(["--port", "abc"], {})
    assert (info.value.name, info.value.value, info.value.problem) == (
        "--port",
        "abc",
        "expected an integer",
    )
    assert info.value.__cause__ is None  # the translated message is the whole story


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            [],
            {"SWITCHYARD_REDIS_URL": "http://:hunter2@redis:6379"},
            "SWITCHYARD_REDIS_URL has value '**********'; "
            "expected a valid redis://, rediss:// or unix:// URL",
        ),
        (
            ["--redis-url", "redis://:hunter2@redis:port"],
            {},
            "--redis-url has value '**********'; "
            "expected a valid redis://, rediss:// or unix:// URL",
        ),
        (
            ["--redis-url", "hunter2@redis:6379"],
            {},
            "--redis-url has value '**********'; "
            "expected a valid redis://, rediss:// or unix:// URL",
        ),
        (
            [],
            {"SWITCHYARD_JWT_SECRT": "hunter2"},
            "SWITCHYARD_JWT_SECRT has value '**********'; unknown setting; "
            "did you mean SWITCHYARD_JWT_SECRET?",
        ),
        (
            [],
            {"SWITCHYARD_DB_PASSWORD": "hunter2"},
            "SWITCHYARD_DB_PASSWORD has value '**********'; unknown setting; "
            "see `python -m runtime --help` for the list",
        ),
        (
            ["--jwt-secrt", "hunter2"],
            {},
            "unknown flag --jwt-secrt; did you mean --jwt-secret?",
        ),
    ],
)
def test_config_errors_never_show_a_secret(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_configuration(argv, environ).check_unknown()
    assert str(info.value) == message
    assert "hunter2" not in repr(info.value.args) + repr(info.value.value)


def test_repr_of_settings_hides_secrets() -> None:
    settings = load_settings(
        ["--jwt-secret", "hunter2" * 5], {"SWITCHYARD_REDIS_URL": "redis://:hunter2@redis:6379/0"}
    )
    text = repr(settings)
    assert "hunter2" not in text
    assert "redis_url=Secret('**********')" in text
    assert "jwt_secret=Secret('**********')" in text
    assert "hunter2" not in str(settings)


def test_secret_hides_its_value_but_compares_by_value() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "**********"
    assert f"{secret}" == "**********"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("hunter3")
    assert secret != "hunter2"
    assert hash(secret) == hash(Secret("hunter2"))
    assert len({secret, Secret("hunter2"), Secret("other")}) == 2


def test_secret_refuses_non_strings() -> None:
    with pytest.raises(TypeError, match=r"^Secret\(\) takes a str, got int$"):
        Secret(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:pw@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host", "redis://user@host"),
        ("unix:///tmp/redis.sock?db=1&password=pw", "unix:///tmp/redis.sock?db=1&password=***"),
        ("redis://[::1", "**********"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_direct_construction_runs_the_value_checks() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(jwt_algorithms=("none",))
    assert str(info.value) == (
        "jwt_algorithms has value ('none',); 'none' is refused because it accepts "
        f"unsigned tokens; use one of {ALGORITHMS}"
    )
    with pytest.raises(ConfigError) as info:
        Settings(redis_url=Secret("http://:hunter2@host"))
    assert str(info.value) == (
        "redis_url has value '**********'; expected a valid redis://, rediss:// or unix:// URL"
    )


@pytest.mark.parametrize("url", ["redis://localhost", "rediss://h:1/0", "unix:///run/r.sock"])
def test_redis_schemes_are_accepted(url: str) -> None:
    assert load_settings(["--redis-url", url], {}).redis_url == Secret(url)


def test_every_field_is_documented() -> None:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        assert isinstance(field.type, msgspec.inspect.Metadata), field.name
        assert (field.type.extra_json_schema or {}).get("description"), field.name


def test_help_lists_every_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as info:
        load_settings(["--help"], {})
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # help text wraps at any space
    assert out.startswith("usage: python -m runtime ")
    for field in FIELDS:
        assert f" {flag_name(field)} " in out, field
        assert f"Env: {env_name(field)}." in out, field
    assert "Default: 8000." in out
    assert "[1..65535]" in out
    assert "Default: HS256." in out
    assert "one of DEBUG, INFO, WARNING, ERROR" in out


def test_parser_has_one_flag_per_field() -> None:
    parser = build_parser()
    assert vars(parser.parse_args([])) == {}  # nothing given: the loader sees no flag
    for field in FIELDS:
        assert vars(parser.parse_args([flag_name(field), "x"])) == {field: "x"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prot", "8000"], "unknown flag --prot; did you mean --port?"),
        (["--prot=8000"], "unknown flag --prot; did you mean --port?"),
        # No close flag: no hint (the shared "--" made --bogus look like --host once).
        (["--bogus"], "unknown flag --bogus; see `python -m runtime --help` for the list"),
        (["--zzz", "1"], "unknown flag --zzz; see `python -m runtime --help` for the list"),
        (["--hots", "::"], "unknown flag --hots; did you mean --host?"),
        (["extra"], "unexpected argument 'extra'; see `python -m runtime --help`"),
    ],
)
def test_unknown_flag_is_a_config_error(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(argv, {})
    assert str(info.value) == message
    configuration = load_configuration(argv, {})  # a late section might take it, until:
    with pytest.raises(ConfigError) as info:
        configuration.check_unknown()
    assert str(info.value) == message


def test_flag_without_its_value_exits_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings(["--port"], {})
    assert info.value.code == 2
    assert "argument --port: expected one argument" in capsys.readouterr().err


# -- bounds: every numeric setting has both, and the boot refuses what is outside -----------


UNITS = {"_seconds": "second", "_bytes": "bytes", "_entries": "entries", "_size": ""}


@pytest.mark.parametrize("schema", [Settings, CacheSettings])
def test_every_numeric_setting_is_bounded_on_both_sides_with_a_unit(schema: type) -> None:
    info = msgspec.inspect.type_info(schema)
    assert isinstance(info, msgspec.inspect.StructType)
    numeric = 0
    for field in info.fields:
        meta, kind = field.type, field.type
        if isinstance(kind, msgspec.inspect.Metadata):
            kind = kind.type
        if not isinstance(kind, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            continue
        numeric += 1
        lower = kind.ge if kind.ge is not None else kind.gt
        upper = kind.le if kind.le is not None else kind.lt
        assert lower is not None and upper is not None, f"{field.name} needs both bounds"
        assert 0 <= lower < upper < 1e11, field.name
        assert isinstance(meta, msgspec.inspect.Metadata)
        description = (meta.extra_json_schema or {}).get("description", "").lower()
        for suffix, unit in UNITS.items():
            if field.name.endswith(suffix):
                assert unit in description, f"{field.name}: the description names no unit"
    assert numeric >= 8


NODE_CASES = [
    ({"SWITCHYARD_PORT": "1e3"},
     "SWITCHYARD_PORT has value '1e3'; expected an integer written in digits, such as 8000"),
    ({"SWITCHYARD_PORT": "8000.0"},
     "SWITCHYARD_PORT has value '8000.0'; expected an integer written in digits, such as 8000"),
    ({"SWITCHYARD_ASK_TIMEOUT_SECONDS": "inf"},
     "SWITCHYARD_ASK_TIMEOUT_SECONDS has value 'inf'; expected a finite number"),
    ({"SWITCHYARD_SHUTDOWN_GRACE_SECONDS": "1e308"},
     "SWITCHYARD_SHUTDOWN_GRACE_SECONDS has value '1e308'; expected a number <= 3600"),
    ({"SWITCHYARD_REDIS_HEALTH_INTERVAL_SECONDS": "1e308"},
     "SWITCHYARD_REDIS_HEALTH_INTERVAL_SECONDS has value '1e308'; expected a number <= 60"),
    ({"SWITCHYARD_REDIS_RECONNECT_MAX_SECONDS": "NaN"},
     "SWITCHYARD_REDIS_RECONNECT_MAX_SECONDS has value 'NaN'; expected a finite number"),
    ({"SWITCHYARD_MAILBOX_SIZE": "1e9"},
     "SWITCHYARD_MAILBOX_SIZE has value '1e9'; expected an integer written in digits, such as "
     "1024"),
    ({"SWITCHYARD_MAX_BODY_BYTES": "10000000000"},
     "SWITCHYARD_MAX_BODY_BYTES has value '10000000000'; expected an integer <= 1.07374e+09"),
    ({"SWITCHYARD_JWT_MAX_LIFETIME_SECONDS": "1e12"},
     "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS has value '1e12'; expected a number <= 2.592e+06"),
    ({"SWITCHYARD_JWT_MAX_LIFETIME_SECONDS": "0"},
     "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS has value '0'; expected a number >= 1"),
    ({"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "1e8"},
     "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '1e8'; expected an integer written in digits, "
     "such as 10000"),
    ({"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "1e12"},
     "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '1e12'; expected an integer written in digits, "
     "such as 10000"),
    ({"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "100000000"},
     "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '100000000'; expected an integer <= 4e+06"),
    ({"SWITCHYARD_CACHE_LOADER_TIMEOUT_SECONDS": "inf"},
     "SWITCHYARD_CACHE_LOADER_TIMEOUT_SECONDS has value 'inf'; expected a finite number"),
    ({"SWITCHYARD_CACHE_LOCK_TTL_SECONDS": "1e308"},
     "SWITCHYARD_CACHE_LOCK_TTL_SECONDS has value '1e308'; expected a number <= 3600"),
    ({"SWITCHYARD_CACHE_MAX_VALUE_BYTES": "1073741824"},
     "SWITCHYARD_CACHE_MAX_VALUE_BYTES has value '1073741824'; expected an integer <= "
     "5.36871e+08"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "message"), NODE_CASES)
def test_out_of_range_numbers_name_their_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_configuration([], environ, sections=[CACHE_SETTINGS])
    assert str(info.value) == message


def test_integers_in_digits_and_bounds_at_the_edges_are_accepted() -> None:
    configuration = load_configuration(
        [],
        {
            "SWITCHYARD_PORT": "65535",
            "SWITCHYARD_ASK_TIMEOUT_SECONDS": "3600",
            "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS": "2592000",
            "SWITCHYARD_CACHE_L1_MAX_ENTRIES": "4000000",
        },
        sections=[CACHE_SETTINGS],
    )
    assert (configuration.node.port, configuration.node.ask_timeout_seconds) == (65535, 3600)
    assert configuration.node.jwt_max_lifetime_seconds == 2_592_000
    assert configuration.section(CACHE_SETTINGS).l1_max_entries == 4_000_000
    assert Settings().jwt_max_lifetime_seconds == 86_400


# -- JWT keys in the settings ---------------------------------------------------------------


EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
STRONG = "a-jwt-secret-that-is-long-enough-for-hs256"


def test_a_public_key_setting_is_read_and_masked() -> None:
    settings = load_settings(
        [], {"SWITCHYARD_JWT_ALGORITHMS": "ES256", "SWITCHYARD_JWT_PUBLIC_KEY": EC_PUBLIC}
    )
    assert settings.jwt_public_key == Secret(EC_PUBLIC)
    assert settings.jwt_secret is None
    assert "BEGIN" not in repr(settings) and "jwt_public_key=Secret('**********')" in repr(settings)


KEY_CASES = [
    ({"SWITCHYARD_JWT_SECRET": "k" * 5},
     "SWITCHYARD_JWT_SECRET has value '**********'; it is 5 bytes; HS256 needs at least 32 "
     "(RFC 7518 §3.2), such as 64 random characters"),
    ({"SWITCHYARD_JWT_SECRET": "k" * 31},
     "SWITCHYARD_JWT_SECRET has value '**********'; it is 31 bytes; HS256 needs at least 32 "
     "(RFC 7518 §3.2), such as 64 random characters"),
    ({"SWITCHYARD_JWT_SECRET": STRONG, "SWITCHYARD_JWT_ALGORITHMS": "HS512"},
     "SWITCHYARD_JWT_SECRET has value '**********'; it is 42 bytes; HS512 needs at least 64 "
     "(RFC 7518 §3.2), such as 64 random characters"),
    ({"SWITCHYARD_JWT_PUBLIC_KEY": EC_PUBLIC},
     "SWITCHYARD_JWT_PUBLIC_KEY has value '**********'; SWITCHYARD_JWT_ALGORITHMS is HS256, "
     "which verifies with SWITCHYARD_JWT_SECRET; set SWITCHYARD_JWT_ALGORITHMS to a public-key "
     "algorithm such as RS256 or ES256"),
    ({"SWITCHYARD_JWT_SECRET": STRONG, "SWITCHYARD_JWT_ALGORITHMS": "RS256"},
     "SWITCHYARD_JWT_SECRET has value '**********'; SWITCHYARD_JWT_ALGORITHMS is RS256, which "
     "verifies with SWITCHYARD_JWT_PUBLIC_KEY; unset SWITCHYARD_JWT_SECRET"),
    ({"SWITCHYARD_JWT_SECRET": STRONG, "SWITCHYARD_JWT_ALGORITHMS": "HS256,RS256"},
     "SWITCHYARD_JWT_ALGORITHMS has value 'HS256,RS256'; expected HS* algorithms alone or "
     "public-key algorithms alone (RS*, PS*, ES*, EdDSA): mixing them lets a public key be used "
     "as an HMAC secret"),
    ({"SWITCHYARD_JWT_PUBLIC_KEY": EC_PUBLIC, "SWITCHYARD_JWT_ALGORITHMS": "RS256"},
     "SWITCHYARD_JWT_PUBLIC_KEY has value '**********'; it is not a PEM public key for RS256"),
    ({"SWITCHYARD_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nx", "SWITCHYARD_JWT_ALGORITHMS":
      "ES256"},
     "SWITCHYARD_JWT_PUBLIC_KEY has value '**********'; it is not a PEM public key for ES256"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "message"), KEY_CASES)
def test_jwt_key_problems_name_their_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], environ)
    assert str(info.value) == message
    assert "BEGIN" not in str(info.value) and "kkkkk" not in str(info.value)


def test_jwt_key_problems_in_code_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(jwt_secret=Secret("short"))
    assert str(info.value).startswith("jwt_secret has value '**********'; it is 5 bytes;")
    with pytest.raises(ConfigError) as info:
        Settings(jwt_public_key=Secret(EC_PUBLIC), jwt_algorithms=("ES384",))
    assert str(info.value) == (
        "jwt_public_key has value '**********'; it is not a PEM public key for ES384"
    )


# -- the boot: a bad value exits 2 naming the variable, never a traceback ---------------------

REPO = Path(__file__).resolve().parents[2]
BOOT_CASES = [
    ({"SWITCHYARD_REDIS_PREFIX": "a*b"},
     "SWITCHYARD_REDIS_PREFIX has value 'a*b'; expected no glob character (* ? [ ] \\), found '*'"),
    ({"SWITCHYARD_REDIS_PREFIX": "a[b"},
     "SWITCHYARD_REDIS_PREFIX has value 'a[b'; expected no glob character (* ? [ ] \\), found '['"),
    ({"SWITCHYARD_REDIS_PREFIX": "a\x01b"},
     "SWITCHYARD_REDIS_PREFIX has value 'a\\x01b'; expected no control character, found '\\x01'"),
    ({"SWITCHYARD_REDIS_PREFIX": "a\x7fb"},
     "SWITCHYARD_REDIS_PREFIX has value 'a\\x7fb'; expected no control character, found '\\x7f'"),
    ({"SWITCHYARD_CACHE_PREFIX": "a\x1bb"},
     "SWITCHYARD_CACHE_PREFIX has value 'a\\x1bb'; expected no control character, found '\\x1b'"),
    ({"SWITCHYARD_CACHE_PREFIX": "keys*"},
     "SWITCHYARD_CACHE_PREFIX has value 'keys*'; expected no glob character (* ? [ ] \\), "
     "found '*'"),
    ({"SWITCHYARD_PORT": "1e3"},
     "SWITCHYARD_PORT has value '1e3'; expected an integer written in digits, such as 8000"),
    ({"SWITCHYARD_ASK_TIMEOUT_SECONDS": "inf"},
     "SWITCHYARD_ASK_TIMEOUT_SECONDS has value 'inf'; expected a finite number"),
    ({"SWITCHYARD_REDIS_HEALTH_INTERVAL_SECONDS": "1e308"},
     "SWITCHYARD_REDIS_HEALTH_INTERVAL_SECONDS has value '1e308'; expected a number <= 60"),
    ({"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "1e8"},
     "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '1e8'; expected an integer written in digits, "
     "such as 10000"),
    ({"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "1e12"},
     "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '1e12'; expected an integer written in digits, "
     "such as 10000"),
    ({"SWITCHYARD_JWT_SECRET": "k" * 31},
     "SWITCHYARD_JWT_SECRET has value '**********'; it is 31 bytes; HS256 needs at least 32 "
     "(RFC 7518 §3.2), such as 64 random characters"),
    ({"SWITCHYARD_JWT_ALGORITHMS": "RS256", "SWITCHYARD_JWT_PUBLIC_KEY": "not a key"},
     "SWITCHYARD_JWT_PUBLIC_KEY has value '**********'; it is not a PEM public key for RS256"),
]  # fmt: skip


def test_bad_values_exit_2_naming_the_variable() -> None:
    """Every case as its own ``python -m runtime`` (started together: each takes ~0.5 s)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "runtime"],
            env={**base, "SWITCHYARD_HOST": "192.0.2.1", **environ},  # TEST-NET: a valid
            # configuration would fail to bind at once rather than run a node
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for environ, _ in BOOT_CASES
    ]  # fmt: skip
    try:
        results = [run.communicate(timeout=60) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    for (environ, message), run, (_, err) in zip(BOOT_CASES, runs, results, strict=True):
        assert (run.returncode, err.strip()) == (
            2,
            f"python -m runtime: configuration error: {message}",
        ), environ
