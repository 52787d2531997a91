"""Logging for the node: one line per event, as readable text or as JSON.

Only ``runtime/__main__.py`` calls :func:`configure_logging`; library code just
uses named loggers (``logging.getLogger("runtime.supervisor")``) with ``%s``
arguments. Text lines look like::

    2026-11-25T21:56:06.123Z INFO runtime.supervisor: child 'cache' restarted

JSON lines carry ``ts``, ``level``, ``logger`` and ``message``, then ``exc``
when an exception is attached, then every ``extra=`` field of the call.
Warnings (``warnings.warn``, e.g. PyJWT's) come out as records of the
``py.warnings`` logger in the same format.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

import msgspec

from ._errors import ConfigError

__all__ = ["JsonFormatter", "configure_logging"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Every attribute a bare LogRecord has (taskName on 3.12+ included), plus the two
# that Formatter.format adds; whatever else a record holds came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_UNENCODABLE = (TypeError, ValueError, OverflowError, RecursionError)


def _utc_timestamp(created: float) -> str:
    """``2026-11-25T21:56:06.123Z``: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _DropHypercornListening(logging.Filter):
    """Drop Hypercorn's "Running on ..." line: the node logs its own, with more in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "hypercorn.error" and str(record.msg).startswith("Running on "))


class _TextFormatter(logging.Formatter):
    """``<UTC timestamp> <LEVEL> <logger>: <message>``, with a traceback below if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line.

    Keys: ``ts`` (UTC ISO 8601), ``level``, ``logger``, ``message``; ``exc``
    (the formatted traceback) when the record carries ``exc_info``; ``stack``
    when it carries ``stack_info``; then each ``extra=`` field, encoded with
    ``str()`` when JSON has no type for it. The standard keys win over an
    extra field of the same name. Newlines inside values are escaped, so a
    record is always exactly one line.
    """

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        payload: dict[str, Any] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        extras = {
            key: value
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS and key not in payload and not key.startswith("_")
        }
        try:
            return self._encoder.encode({**payload, **extras}).decode()
        except _UNENCODABLE:
            # An extra msgspec refuses even with str() (a self-referencing list):
            # log the record anyway, with repr() for just the extras that fail.
            safe = {key: self._encodable(value) for key, value in extras.items()}
            return self._encoder.encode({**payload, **safe}).decode()

    def _encodable(self, value: object) -> object:
        try:
            self._encoder.encode(value)
        except _UNENCODABLE:
            return repr(value)
        return value


def configure_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: IO[str] | None = None,
) -> None:
    """Send every log record to one stream, formatted as text or JSON lines.

    Replaces the root logger's handlers and routes warnings through logging
    (``logging.captureWarnings``). Keeps ``hypercorn.error`` at ``level``
    without its "Running on" line (the node logs where it listens), shows
    the access log (``runtime.access``, one record per request and WebSocket;
    ``hypercorn.access`` too, where a Hypercorn config turns it on) only at
    DEBUG, and keeps the frame-level ``hpack``/``h2`` chatter and
    ``asyncio`` debug notes at WARNING unless ``level`` is DEBUG
    (``hpack``/``h2``: always).

    Args:
        level: lowest level logged: DEBUG, INFO, WARNING or ERROR, in any case.
        fmt: ``"text"`` for readable lines, ``"json"`` for one JSON object per line.
        stream: where lines go; ``None`` means ``sys.stderr``.

    Raises:
        ConfigError: ``level`` or ``fmt`` is not one of the accepted values.
    """
    level = level.upper()
    if level not in _LEVELS:
        raise ConfigError("log_level", level, "expected one of " + ", ".join(_LEVELS))
    if fmt not in ("text", "json"):
        raise ConfigError("log_format", fmt, "expected one of text, json")
    debug = level == "DEBUG"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,  # loggers made at import time keep working
            "formatters": {"text": {"()": _TextFormatter}, "json": {"()": JsonFormatter}},
            "filters": {"no_listening_line": {"()": _DropHypercornListening}},
            "handlers": {
                "console": {
                    "class": "logging.StreamHandler",
                    "formatter": fmt,
                    "stream": sys.stderr if stream is None else stream,
                    "filters": ["no_listening_line"],
                }
            },
            "root": {"level": level, "handlers": ["console"]},
            "loggers": {
                "hypercorn.error": {"level": level},
                "hypercorn.access": {"level": "DEBUG" if debug else "WARNING"},
                "asyncio": {"level": "DEBUG" if debug else "WARNING"},
                "hpack": {"level": "WARNING"},
                "h2": {"level": "WARNING"},
            },
        }
    )
    logging.captureWarnings(True)
