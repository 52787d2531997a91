"""The cache's settings section: the variables users set, its errors, --help, install."""

from __future__ import annotations

import pytest

import actors.cache
from actors.cache import CACHE_SETTINGS, Cache
from runtime import (
    ConfigError,
    Configuration,
    MemoryFanout,
    Settings,
    SystemClock,
    assemble_node,
    load_configuration,
)
from runtime.node import SECTIONS


def error_of(argv: list[str], environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_configuration(argv, environ, sections=SECTIONS).check_unknown()
    return str(info.value)


CACHE_VARIABLES = {  # the names users set before the cache had a section: unchanged
    "SWITCHYARD_CACHE_DEFAULT_TTL_SECONDS": ("60", "default_ttl_seconds", 60.0),
    "SWITCHYARD_CACHE_L1_MAX_ENTRIES": ("500", "l1_max_entries", 500),
    "SWITCHYARD_CACHE_L1_MAX_BYTES": ("4096", "l1_max_bytes", 4096),
    "SWITCHYARD_CACHE_MAX_VALUE_BYTES": ("2048", "max_value_bytes", 2048),
    "SWITCHYARD_CACHE_NEGATIVE_TTL_SECONDS": ("1.5", "negative_ttl_seconds", 1.5),
    "SWITCHYARD_CACHE_LOCK_TTL_SECONDS": ("3", "lock_ttl_seconds", 3.0),
    "SWITCHYARD_CACHE_WRITE_QUEUE_SIZE": ("16", "write_queue_size", 16),
}


def test_the_cache_section_reads_the_variables_users_already_set() -> None:
    environ = {name: raw for name, (raw, _, _) in CACHE_VARIABLES.items()}
    environ["SWITCHYARD_CACHE_PREFIX"] = "tenant7"  # the deprecated alias, under the same prefix
    configuration = load_configuration(
        ["--cache-write-batch-size", "8"], environ, sections=SECTIONS
    )
    cache = configuration.section(CACHE_SETTINGS)
    for _, field, value in CACHE_VARIABLES.values():
        assert getattr(cache, field) == value, field
    assert cache.write_batch_size == 8
    assert configuration.node.redis_prefix == "tenant7"
    configuration.check_unknown()
    assert "cache_l1_max_entries" not in Settings.__struct_fields__  # the node knows no cache


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            [],
            {"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "lots"},
            "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value 'lots'; expected an integer",
        ),
        (
            [],
            {"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "0"},
            "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '0'; expected an integer >= 1",
        ),
        (
            ["--cache-default-ttl-seconds", "3000000"],
            {},
            "--cache-default-ttl-seconds has value '3000000'; expected a number <= 2.592e+06",
        ),
        (
            [],
            {"SWITCHYARD_CACHE_L1_MAX_ENTRIE": "5"},
            "SWITCHYARD_CACHE_L1_MAX_ENTRIE has value '5'; unknown setting; "
            "did you mean SWITCHYARD_CACHE_L1_MAX_ENTRIES?",
        ),
    ],
)
def test_a_bad_cache_value_names_its_variable_and_value(
    argv: list[str], environ: dict[str, str], message: str
) -> None:
    assert error_of(argv, environ) == message


async def test_the_cache_section_asked_for_by_install_in_a_hook() -> None:
    async def assemble(configuration: Configuration) -> Cache:
        context, _ = await assemble_node(
            configuration,
            clock=SystemClock(),
            redis=None,
            fanout=MemoryFanout(),
            builders=[actors.cache.install],  # a section nobody loaded: read when installed
        )
        context.supervisor.close()
        return context.get(actors.cache.CACHE)

    with pytest.raises(ConfigError) as info:
        await assemble(load_configuration([], {"SWITCHYARD_CACHE_L1_MAX_ENTRIES": "0"}))
    assert str(info.value) == (
        "SWITCHYARD_CACHE_L1_MAX_ENTRIES has value '0'; expected an integer >= 1"
    )
    cache = await assemble(load_configuration([], {"SWITCHYARD_REDIS_PREFIX": "tenant7"}))
    assert cache.keyspace.namespace == "tenant7:cache:"  # keys follow the node's redis_prefix


def test_help_of_the_default_node_lists_the_cache_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        load_configuration(["--help"], {}, sections=SECTIONS)
    text = capsys.readouterr().out
    assert "\nCache:\n" in text
    flag_at = text.index("\n  --cache-l1-max-entries ")
    assert text.index("\nnode settings:") < text.index("\nCache:") < flag_at
    assert "SWITCHYARD_CACHE_L1_MAX_ENTRIES" in text
