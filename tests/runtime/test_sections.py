"""Settings sections and the Configuration: variables, flags, errors, help, late sections.

Also: unknown variables across sections, the deprecated ``SWITCHYARD_CACHE_PREFIX``
alias, the variables a container platform injects, and ``mailbox_size``.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import Meta

from runtime import (
    ChildSpec,
    ConfigError,
    Configuration,
    NodeSetup,
    Secret,
    Settings,
    SettingsSection,
    SystemClock,
    assemble_node,
    load_configuration,
    load_settings,
)
from runtime import MemoryFanout as _MemoryFanout
from runtime._configuration import build_parser
from runtime.testing import Probe, open_app


class DemoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_rooms: Annotated[int, Meta(ge=1, le=1000, description="Most rooms at once.")] = 100
    history_seconds: Annotated[float, Meta(gt=0, description="How long history is kept.")] = 60.0
    mode: Annotated[Literal["fast", "safe"], Meta(description="Delivery mode.")] = "safe"
    api_key: Annotated[Secret | None, Meta(description="Key of the upstream.")] = None
    tags: Annotated[tuple[str, ...], Meta(description="Labels.")] = ()


DEMO = SettingsSection("demo", DemoSettings, title="Demo")


class OtherSettings(msgspec.Struct, frozen=True, kw_only=True):
    queue_depth: Annotated[int, Meta(ge=1, description="Jobs queued at most.")] = 10


OTHER = SettingsSection("other_thing", OtherSettings, title="Other thing")


def error_of(argv: list[str], environ: dict[str, str], *sections: SettingsSection[Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_configuration(argv, environ, sections=sections).check_unknown()
    return str(info.value)


# -- declaring a section ----------------------------------------------------------------------


def test_a_section_derives_its_variables_and_flags_from_its_name() -> None:
    assert DEMO.env_prefix == "SWITCHYARD_DEMO_"
    assert DEMO.flag_prefix == "--demo-"
    assert [(f.env, f.flag) for f in DEMO.fields][:2] == [
        ("SWITCHYARD_DEMO_MAX_ROOMS", "--demo-max-rooms"),
        ("SWITCHYARD_DEMO_HISTORY_SECONDS", "--demo-history-seconds"),
    ]
    assert OTHER.fields[0].env == "SWITCHYARD_OTHER_THING_QUEUE_DEPTH"
    assert OTHER.fields[0].flag == "--other-thing-queue-depth"
    assert DEMO.defaults() == DemoSettings()
    assert repr(DEMO) == "SettingsSection('demo', DemoSettings)"


class Loose(msgspec.Struct):
    size: int = 1


class NoDefault(msgspec.Struct, frozen=True):
    size: int


class LooksInjected(msgspec.Struct, frozen=True):
    service_host: str = "x"


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda: SettingsSection("Demo", DemoSettings, title="D"), ValueError, "lower-case word"),
        (lambda: SettingsSection("loose", Loose, title="L"), TypeError, "frozen msgspec.Struct"),
        (
            lambda: SettingsSection("d", dict, title="D"),  # type: ignore[type-var]
            TypeError,
            "frozen msgspec.Struct",
        ),
        (lambda: SettingsSection("nd", NoDefault, title="N"), TypeError, "'size' needs a default"),
        (
            lambda: SettingsSection("hub", LooksInjected, title="H"),
            ValueError,
            "SWITCHYARD_HUB_SERVICE_HOST would be taken for one that a container platform",
        ),
        (
            lambda: SettingsSection("d", DemoSettings, title="D", env_prefix="demo"),
            ValueError,
            "env_prefix 'demo' must end in '_'",
        ),
        (
            lambda: SettingsSection("d", DemoSettings, title="D", flag_prefix="-d-"),
            ValueError,
            "flag_prefix '-d-' must start '--'",
        ),
    ],
)
def test_a_malformed_section_is_refused_when_declared(
    make: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        make()


def test_two_sections_with_one_name_or_one_variable_are_refused() -> None:
    twin = SettingsSection("demo", OtherSettings, title="Twin")
    with pytest.raises(ValueError, match="two settings sections are named 'demo'"):
        load_configuration([], {}, sections=[DEMO, twin])

    class Clash(msgspec.Struct, frozen=True):
        secret: str = ""

    clash = SettingsSection("jwt", Clash, title="JWT")  # SWITCHYARD_JWT_SECRET is the node's
    with pytest.raises(ValueError, match="SWITCHYARD_JWT_SECRET is declared by sections 'node'"):
        load_configuration([], {}, sections=[clash])
    configuration = load_configuration([], {}, sections=[DEMO])
    with pytest.raises(ValueError, match="named 'demo'"):
        configuration.section(twin)  # a late section is checked the same


# -- loading ----------------------------------------------------------------------------------


def test_a_section_reads_variables_then_flags_and_keeps_its_defaults() -> None:
    configuration = load_configuration(
        ["--demo-mode", "FAST", "--demo-max-rooms=7", "--port", "9001"],
        {
            "SWITCHYARD_DEMO_MAX_ROOMS": "5",
            "SWITCHYARD_DEMO_TAGS": "a, b,",
            "SWITCHYARD_DEMO_API_KEY": "k3y",
            "SWITCHYARD_HOST": "0.0.0.0",
        },
        sections=[DEMO, OTHER],
    )
    demo = configuration.section(DEMO)
    assert demo == DemoSettings(max_rooms=7, mode="fast", tags=("a", "b"), api_key=Secret("k3y"))
    assert configuration.section(OTHER) == OtherSettings()
    assert (configuration.node.port, configuration.node.host) == (9001, "0.0.0.0")
    assert configuration.sections == (DEMO, OTHER)
    assert "k3y" not in repr(configuration) + repr(demo)
    configuration.check_unknown()


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            [],
            {"SWITCHYARD_DEMO_MAX_ROOMS": "many"},
            "SWITCHYARD_DEMO_MAX_ROOMS has value 'many'; expected an integer",
        ),
        (
            ["--demo-max-rooms", "0"],
            {},
            "--demo-max-rooms has value '0'; expected an integer >= 1",
        ),
        (
            [],
            {"SWITCHYARD_DEMO_MAX_ROOMS": "1001"},
            "SWITCHYARD_DEMO_MAX_ROOMS has value '1001'; expected an integer <= 1000",
        ),
        (
            [],
            {"SWITCHYARD_DEMO_HISTORY_SECONDS": "-1"},
            "SWITCHYARD_DEMO_HISTORY_SECONDS has value '-1'; expected a number > 0",
        ),
        (
            ["--demo-mode", "slow"],
            {},
            "--demo-mode has value 'slow'; expected one of fast, safe (any case)",
        ),
    ],
)
def test_a_bad_section_value_names_its_variable_or_flag_and_value(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_configuration(argv, environ, sections=[DEMO])  # validated at load
    assert str(info.value) == message
    assert info.value.__cause__ is None


def test_unknown_variables_are_errors_only_once_every_section_had_its_say() -> None:
    environ = {"SWITCHYARD_DEMO_MAX_ROOMS": "5"}
    configuration = load_configuration([], environ)  # nobody loaded DEMO: not an error yet
    with pytest.raises(ConfigError) as info:
        configuration.check_unknown()
    assert info.value.name == "SWITCHYARD_DEMO_MAX_ROOMS"
    assert "unknown setting" in info.value.problem
    configuration.check_unknown([DEMO])  # now DEMO reads it
    assert configuration.section(DEMO).max_rooms == 5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"SWITCHYARD_DEMO_MAX_ROOMZ": "5"},
            "SWITCHYARD_DEMO_MAX_ROOMZ has value '5'; unknown setting; "
            "did you mean SWITCHYARD_DEMO_MAX_ROOMS?",
        ),
        (
            {"SWITCHYARD_OTHER_THING_QUEUE_DEPT": "5"},
            "SWITCHYARD_OTHER_THING_QUEUE_DEPT has value '5'; unknown setting; "
            "did you mean SWITCHYARD_OTHER_THING_QUEUE_DEPTH?",
        ),
        (
            {"SWITCHYARD_PROTT": "8000"},
            "SWITCHYARD_PROTT has value '8000'; unknown setting; did you mean SWITCHYARD_PORT?",
        ),
        (
            {"SWITCHYARD_DEMO_API_KY": "hunter2"},
            "SWITCHYARD_DEMO_API_KY has value '**********'; unknown setting; "
            "did you mean SWITCHYARD_DEMO_API_KEY?",
        ),
        (
            {"SWITCHYARD_ZZZ": "1"},
            "SWITCHYARD_ZZZ has value '1'; unknown setting; "
            "see `python -m runtime --help` for the list",
        ),
    ],
)
def test_unknown_variable_hints_at_the_closest_setting_across_sections(
    environ: dict[str, str], message: str
) -> None:
    assert error_of([], environ, DEMO, OTHER) == message


def test_unknown_flag_hints_at_the_closest_flag_across_sections() -> None:
    assert error_of(["--demo-max-room", "3"], {}, DEMO) == (
        "unknown flag --demo-max-room; did you mean --demo-max-rooms?"
    )


def test_variables_of_other_programs_are_not_ours() -> None:
    environ = {"OTHER_PORT": "x", "SWITCHYARDS": "x", "PATH": "/usr/bin"}
    load_configuration([], environ, sections=[DEMO]).check_unknown()


# -- a section asked for late -----------------------------------------------------------------


def test_a_late_section_reads_the_captured_environment_and_the_leftover_flags() -> None:
    environ = {"SWITCHYARD_DEMO_MAX_ROOMS": "5", "SWITCHYARD_DEMO_MODE": "fast"}
    configuration = load_configuration(["--demo-history-seconds", "2.5", "--port=9002"], environ)
    environ["SWITCHYARD_DEMO_MAX_ROOMS"] = "6"  # captured at load: later changes do not count
    assert configuration.node.port == 9002
    demo = configuration.section(DEMO)
    assert demo == DemoSettings(max_rooms=5, mode="fast", history_seconds=2.5)
    assert configuration.section(DEMO) is demo  # validated once
    configuration.check_unknown()  # the late section took its flag


def test_a_late_section_reports_a_bad_value_like_a_loaded_one() -> None:
    configuration = load_configuration(["--demo-max-rooms", "0"], {"SWITCHYARD_DEMO_MODE": "x"})
    with pytest.raises(ConfigError) as info:
        configuration.section(DEMO)
    assert str(info.value) == (
        "SWITCHYARD_DEMO_MODE has value 'x'; expected one of fast, safe (any case)"
    )
    configuration = load_configuration(["--demo-max-rooms", "0"], {})
    with pytest.raises(ConfigError) as info:
        configuration.section(DEMO)
    assert str(info.value) == "--demo-max-rooms has value '0'; expected an integer >= 1"
    configuration = load_configuration(["--demo-max-rooms"], {})  # no value: no exit here
    with pytest.raises(ConfigError) as info:
        configuration.section(DEMO)
    assert str(info.value) == "--demo-max-rooms: expected one argument"


async def test_a_setup_hook_asks_for_its_section_and_assembly_checks_unknown_variables() -> None:
    seen: list[DemoSettings] = []

    def hook(setup: NodeSetup) -> None:
        seen.append(setup.section(DEMO))

    async def assemble(configuration: Configuration) -> None:
        await assemble_node(
            configuration,
            clock=SystemClock(),
            redis=None,
            fanout=_MemoryFanout(),
            builders=[None, hook],
        )

    good = load_configuration(["--demo-tags", "x"], {"SWITCHYARD_DEMO_MAX_ROOMS": "9"})
    await assemble(good)
    assert seen == [DemoSettings(max_rooms=9, tags=("x",))]

    with pytest.raises(ConfigError) as info:
        await assemble(load_configuration([], {"SWITCHYARD_DEMO_MAX_ROOMS": "nine"}))
    assert str(info.value) == "SWITCHYARD_DEMO_MAX_ROOMS has value 'nine'; expected an integer"

    typo = load_configuration([], {"SWITCHYARD_DEMO_MAX_ROOMZ": "9"})
    with pytest.raises(ConfigError) as info:
        await assemble(typo)  # the hook ran: DEMO's names are known for the hint
    assert str(info.value) == (
        "SWITCHYARD_DEMO_MAX_ROOMZ has value '9'; unknown setting; "
        "did you mean SWITCHYARD_DEMO_MAX_ROOMS?"
    )


# -- a configuration given in code ------------------------------------------------------------


def test_configuration_of_takes_values_and_defaults_and_checks_bounds() -> None:
    configuration = Configuration.of(Settings(port=0), {DEMO: DemoSettings(max_rooms=3)})
    assert configuration.node == Settings(port=0)  # the node's own settings as given
    assert configuration.section(DEMO).max_rooms == 3
    assert configuration.section(OTHER) == OtherSettings()  # not given: its defaults
    configuration.check_unknown([DEMO, OTHER])  # no environment was read: nothing unknown
    assert Configuration.of().node == Settings()
    with pytest.raises(ConfigError) as info:
        Configuration.of(sections={DEMO: DemoSettings(max_rooms=0)})
    assert str(info.value) == "demo.max_rooms has value 0; expected an integer >= 1"
    with pytest.raises(ConfigError) as info:
        Configuration.of(sections={DEMO: DemoSettings(api_key=Secret("hunter2"), mode="x")})  # type: ignore[arg-type]
    assert str(info.value) == "demo.mode has value 'x'; expected one of fast, safe (any case)"
    with pytest.raises(TypeError, match="section 'demo' takes a DemoSettings, got OtherSettings"):
        Configuration.of(sections={DEMO: OtherSettings()})


# -- --help -----------------------------------------------------------------------------------


def test_help_lists_the_node_then_each_section_under_its_heading(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        load_configuration(["--help"], {}, sections=[DEMO, OTHER])
    assert info.value.code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    headings = [line for line in lines if line and not line[0].isspace() and line.endswith(":")]
    assert headings[-3:] == ["node settings:", "Demo:", "Other thing:"]
    flat = " ".join(text.split())
    assert "Variables SWITCHYARD_DEMO_*, flags --demo-*." in flat
    node_at, demo_at, other_at = (text.index(h) for h in headings[-3:])
    for spec in DEMO.fields:
        assert demo_at < text.index(f"  {spec.flag} ") < other_at, spec.name
        assert f"Env: {spec.env}." in flat
    assert node_at < text.index("  --port ") < demo_at
    assert other_at < text.index("  --other-thing-queue-depth ")
    assert "Default: 60." in flat
    assert "[1..1000]" in flat
    assert "[secret, never shown]" in flat
    assert "SWITCHYARD_CACHE_PREFIX is a deprecated alias of SWITCHYARD_REDIS_PREFIX" in flat
    assert "*_SERVICE_HOST" in flat


def test_parser_puts_section_flags_under_qualified_names() -> None:
    namespace = build_parser([DEMO]).parse_args(["--demo-max-rooms", "4", "--port", "1"])
    assert vars(namespace) == {"demo.max_rooms": "4", "port": "1"}


# -- the deprecated SWITCHYARD_CACHE_PREFIX ---------------------------------------------------


def test_cache_prefix_is_a_deprecated_alias_of_redis_prefix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.settings")
    configuration = load_configuration([], {"SWITCHYARD_CACHE_PREFIX": "tenant7"})
    assert configuration.node.redis_prefix == "tenant7"
    assert caplog.messages == []  # logged once the node is assembled (logging is set up then)
    configuration.check_unknown()  # the alias is a known variable
    assert caplog.messages == [
        "SWITCHYARD_CACHE_PREFIX is deprecated; set SWITCHYARD_REDIS_PREFIX instead"
    ]
    configuration.check_unknown()
    assert len(caplog.messages) == 1  # once
    caplog.clear()
    assert load_settings([], {"SWITCHYARD_CACHE_PREFIX": "t"}).redis_prefix == "t"
    assert caplog.messages == [
        "SWITCHYARD_CACHE_PREFIX is deprecated; set SWITCHYARD_REDIS_PREFIX instead"
    ]


def test_cache_prefix_and_redis_prefix_must_agree() -> None:
    same = {"SWITCHYARD_CACHE_PREFIX": "t", "SWITCHYARD_REDIS_PREFIX": "t"}
    assert load_settings([], same).redis_prefix == "t"
    with pytest.raises(ConfigError) as info:
        load_settings([], {"SWITCHYARD_CACHE_PREFIX": "a", "SWITCHYARD_REDIS_PREFIX": "b"})
    assert str(info.value) == (
        "SWITCHYARD_CACHE_PREFIX has value 'a'; it is a deprecated alias of "
        "SWITCHYARD_REDIS_PREFIX, which has value 'b'; set SWITCHYARD_REDIS_PREFIX alone"
    )
    flag = load_settings(["--redis-prefix", "f"], {"SWITCHYARD_CACHE_PREFIX": "a"})
    assert flag.redis_prefix == "f"  # a flag beats every variable, the alias too


# -- variables a container platform injects ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "SWITCHYARD_SERVICE_HOST",
        "SWITCHYARD_SERVICE_PORT",
        "SWITCHYARD_SERVICE_PORT_HTTP",
        "SWITCHYARD_PORT_8000_TCP",
        "SWITCHYARD_PORT_8000_TCP_PROTO",
        "SWITCHYARD_PORT_8000_TCP_PORT",
        "SWITCHYARD_PORT_8000_TCP_ADDR",
        "SWITCHYARD_PORT_53_UDP",
        "SWITCHYARD_DEMO_SERVICE_HOST",  # a Service named switchyard-demo
        "SWITCHYARD_DEMO_PORT_9000_TCP_ADDR",
    ],
)
def test_service_link_variables_are_ignored(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.settings")
    values = {"_PROTO": "tcp", "_PORT": "8000", "_ADDR": "10.0.0.1", "_HOST": "10.0.0.1"}
    value = next((v for end, v in values.items() if name.endswith(end)), "tcp://10.0.0.1:8000")
    configuration = load_configuration([], {name: value}, sections=[DEMO])
    configuration.check_unknown()
    assert configuration.node == Settings()
    assert configuration.section(DEMO) == DemoSettings()
    assert caplog.messages == [
        f"ignoring {name}: variables a container platform injects, not settings"
    ]


@pytest.mark.parametrize("value", ["tcp://10.0.0.1:8000", "udp://10.0.0.1:53", "TCP://h:1"])
def test_switchyard_port_with_a_url_is_a_service_link_not_the_port(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.settings")
    configuration = load_configuration([], {"SWITCHYARD_PORT": value})
    assert configuration.node.port == 8000
    configuration.check_unknown()
    assert caplog.messages == [
        f"ignoring SWITCHYARD_PORT={value!r}: a container platform's service link, not the setting"
    ]


def test_switchyard_port_with_a_number_is_the_port_and_nonsense_is_an_error() -> None:
    environ = {
        "SWITCHYARD_PORT": "9000",
        "SWITCHYARD_SERVICE_HOST": "10.0.0.1",
        "SWITCHYARD_PORT_8000_TCP": "tcp://10.0.0.1:8000",
    }
    configuration = load_configuration([], environ)
    configuration.check_unknown()
    assert configuration.node.port == 9000
    assert error_of([], {"SWITCHYARD_PORT": "http://h:1"}) == (
        "SWITCHYARD_PORT has value 'http://h:1'; expected an integer"
    )


def test_a_plain_port_variable_nobody_reads_is_still_unknown() -> None:
    assert error_of([], {"SWITCHYARD_DEMO_PORT": "9100"}, DEMO).startswith(
        "SWITCHYARD_DEMO_PORT has value '9100'; unknown setting"
    )
    load_configuration([], {"SWITCHYARD_DEMO_PORT": "tcp://h:1"}, sections=[DEMO]).check_unknown()


# -- the node's wiring ------------------------------------------------------------------------


async def test_open_app_passes_sections_and_the_node_mailbox_size() -> None:
    seen: list[DemoSettings] = []

    def compose(setup: NodeSetup) -> None:
        seen.append(setup.section(DEMO))
        setup.add_actor(ChildSpec("probe", Probe))
        setup.add_actor(ChildSpec("small", Probe, mailbox_size=2))

    settings = Settings(mailbox_size=7)
    async with open_app(settings, compose=compose, sections={DEMO: DemoSettings(max_rooms=4)}) as (
        _,
        context,
    ):
        refs = context.supervisor.refs
        assert refs["probe"].statistics().mailbox_capacity == 7
        assert refs["small"].statistics().mailbox_capacity == 2
    assert seen == [DemoSettings(max_rooms=4)]


def test_mailbox_size_is_read_from_the_environment() -> None:
    assert load_settings([], {"SWITCHYARD_MAILBOX_SIZE": "7"}).mailbox_size == 7
