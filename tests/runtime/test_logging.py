"""Logging: the text line shape, one JSON object per line, and the quieted loggers."""

from __future__ import annotations

import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType

import msgspec
import pytest

from runtime._errors import ConfigError
from runtime._logging import JsonFormatter, configure_logging
from runtime._settings import Secret

TUNED = ("hypercorn.error", "hypercorn.access", "asyncio", "hpack", "h2", "runtime.test")
# 2026-11-25T21:56:06.123Z as an epoch timestamp.
CREATED = datetime(2026, 11, 25, 21, 56, 6, 123000, tzinfo=UTC).timestamp()


@pytest.fixture(name="stream")
def _stream() -> Iterator[io.StringIO]:
    """A stream for configure_logging; the global logging state is restored afterwards."""
    root = logging.getLogger()
    saved_root = (root.level, root.handlers[:])
    saved = {name: logging.getLogger(name).level for name in TUNED}
    yield io.StringIO()
    logging.captureWarnings(False)
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(saved_root[0])
    for handler in saved_root[1]:
        root.addHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def record(
    msg: str = "child %s restarted",
    args: tuple[object, ...] = ("cache",),
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None,
    **extra: object,
) -> logging.LogRecord:
    made = logging.getLogger("runtime.supervisor").makeRecord(
        "runtime.supervisor", logging.INFO, __file__, 1, msg, args, exc_info, extra=extra
    )
    made.created = CREATED
    return made


def test_text_line_shape(stream: io.StringIO) -> None:
    configure_logging("INFO", "text", stream)
    logging.getLogger().handle(record())
    logging.getLogger("runtime.test").warning("free port %d", 8000)
    first, second = stream.getvalue().splitlines()
    assert first == "2026-11-25T21:56:06.123Z INFO runtime.supervisor: child cache restarted"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING runtime\.test: free port 8000", second
    )


def test_text_appends_the_traceback(stream: io.StringIO) -> None:
    configure_logging("INFO", "text", stream)
    try:
        raise ValueError("bad input")
    except ValueError:
        logging.getLogger("runtime.test").exception("handler failed")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" ERROR runtime.test: handler failed")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad input"


def test_json_is_one_parseable_line_with_extras_and_exc(stream: io.StringIO) -> None:
    configure_logging("INFO", "json", stream)
    try:
        raise ValueError("bad\ninput")
    except ValueError:
        logging.getLogger().handle(
            record(
                "child %s crashed\nwhile handling %s",
                ("cache", "cache.get"),
                exc_info=sys.exc_info(),  # type: ignore[arg-type]
                actor_id="cache",
                restarts=3,
                tags=["a", "b"],
                secret=Secret("hunter2"),
                level="extras never override the standard keys",
            )
        )
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    line = msgspec.json.decode(text)
    exc = line.pop("exc")
    assert line == {
        "ts": "2026-11-25T21:56:06.123Z",
        "level": "INFO",
        "logger": "runtime.supervisor",
        "message": "child cache crashed\nwhile handling cache.get",
        "actor_id": "cache",
        "restarts": 3,
        "tags": ["a", "b"],
        "secret": "**********",
    }
    assert exc.startswith("Traceback (most recent call last):\n")
    assert exc.endswith("ValueError: bad\ninput")
    assert "hunter2" not in text


def test_json_without_exception_has_no_exc_key() -> None:
    line = msgspec.json.decode(JsonFormatter().format(record()))
    assert line == {
        "ts": "2026-11-25T21:56:06.123Z",
        "level": "INFO",
        "logger": "runtime.supervisor",
        "message": "child cache restarted",
    }


def test_json_encodes_unknown_types_with_str() -> None:
    class Point:
        def __str__(self) -> str:
            return "(1, 2)"

    made = record(point=Point(), nested={"p": Point()}, big=2**70, when=datetime(2026, 1, 1))
    line = msgspec.json.decode(JsonFormatter().format(made))
    assert line["point"] == "(1, 2)"
    assert line["nested"] == {"p": "(1, 2)"}
    assert line["big"] == 2**70
    assert line["when"] == "2026-01-01T00:00:00"


def test_json_falls_back_to_repr_for_unencodable_extras() -> None:
    loop: list[object] = []
    loop.append(loop)
    line = msgspec.json.decode(JsonFormatter().format(record(loop=loop, actor_id="cache")))
    assert line["loop"] == "[[...]]"
    assert line["actor_id"] == "cache"
    assert line["message"] == "child cache restarted"


def test_levels_and_quieted_loggers(stream: io.StringIO) -> None:
    configure_logging("warning", "text", stream)
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("hypercorn.error").level == logging.WARNING
    assert logging.getLogger("hypercorn.access").level == logging.WARNING
    assert logging.getLogger("hpack").level == logging.WARNING
    logging.getLogger("runtime.test").info("hidden")
    logging.getLogger("hypercorn.access").info("GET / 200")
    assert stream.getvalue() == ""


def test_debug_shows_access_lines(stream: io.StringIO) -> None:
    configure_logging("DEBUG", "text", stream)
    assert logging.getLogger("hypercorn.error").level == logging.DEBUG
    assert logging.getLogger("hypercorn.access").level == logging.DEBUG
    assert logging.getLogger("h2").level == logging.WARNING
    logging.getLogger("hypercorn.access").info("GET / 200")
    assert stream.getvalue().endswith(" INFO hypercorn.access: GET / 200\n")


def test_info_hides_access_lines_but_keeps_server_errors(stream: io.StringIO) -> None:
    configure_logging("INFO", "text", stream)
    logging.getLogger("hypercorn.access").info("GET / 200")
    logging.getLogger("runtime.access").debug("GET / 200 0.1 ms (request id x)")
    logging.getLogger("hypercorn.error").error("Error in ASGI Framework")
    assert stream.getvalue().endswith(" ERROR hypercorn.error: Error in ASGI Framework\n")
    assert "GET / 200" not in stream.getvalue()


def test_hypercorns_listening_line_is_dropped_as_the_node_logs_its_own(
    stream: io.StringIO,
) -> None:
    configure_logging("DEBUG", "text", stream)
    hypercorn = logging.getLogger("hypercorn.error")
    hypercorn.info("Running on http://127.0.0.1:8000 over http (CTRL + C to quit)")
    hypercorn.info("Running on %s", "fd://3")
    logging.getLogger("runtime.node").info("Running on a node's own words stays")
    assert stream.getvalue().endswith(" INFO runtime.node: Running on a node's own words stays\n")
    assert stream.getvalue().count("\n") == 1


def test_warnings_come_out_as_json_records(stream: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # pytest turns warnings into errors here
        configure_logging("INFO", "json", stream)
        warnings.warn("the HMAC key is 8 bytes long", UserWarning, stacklevel=1)
    (line,) = stream.getvalue().splitlines()
    payload = msgspec.json.decode(line)
    assert (payload["level"], payload["logger"]) == ("WARNING", "py.warnings")
    assert "UserWarning: the HMAC key is 8 bytes long" in payload["message"]


def test_bad_level_and_format_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging("trace")
    assert (
        str(info.value)
        == "log_level has value 'TRACE'; expected one of DEBUG, INFO, WARNING, ERROR"
    )
    with pytest.raises(ConfigError) as info:
        configure_logging("INFO", "xml")  # type: ignore[arg-type]
    assert str(info.value) == "log_format has value 'xml'; expected one of text, json"
