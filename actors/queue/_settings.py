"""The queue's settings: a section of the node's configuration (``SWITCHYARD_QUEUE_*``).

``concurrency`` and ``rate_limits`` are short texts (``"default=5,email=10"``,
``"email=100/60"``) parsed by :func:`parse_concurrency` and
:func:`parse_rate_limits`; a bad text is a :class:`~runtime.ConfigError` at boot.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from runtime import ConfigError, SettingsSection

from ._model import QUEUE_NAME

__all__ = ["QUEUE_SETTINGS", "QueueSettings", "parse_concurrency", "parse_rate_limits"]


def _pairs(field: str, text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or QUEUE_NAME.match(name) is None:
            raise ConfigError(field, text, f"expected 'queue=value' pairs, got {item!r}")
        if name in seen:
            raise ConfigError(field, text, f"queue {name!r} is given twice")
        seen.add(name)
        pairs.append((name, value.strip()))
    return pairs


def parse_concurrency(text: str) -> dict[str, int]:
    """``"default=5,email=10"`` as ``{"default": 5, "email": 10}``.

    Raises:
        ConfigError: a malformed pair, a concurrency outside 1..10000, or no queue at all.
    """
    result: dict[str, int] = {}
    for name, value in _pairs("concurrency", text):
        if not value.isdigit() or not 1 <= int(value) <= 10_000:
            raise ConfigError(
                "concurrency", text, f"queue {name!r}: expected 1..10000, got {value!r}"
            )
        result[name] = int(value)
    if not result:
        raise ConfigError("concurrency", text, "expected at least one queue, e.g. 'default=5'")
    return result


def parse_rate_limits(text: str) -> dict[str, tuple[int, float]]:
    """``"email=100/60"`` as ``{"email": (100, 60.0)}`` (at most 100 jobs per 60 s).

    Raises:
        ConfigError: a malformed pair or non-positive numbers.
    """
    result: dict[str, tuple[int, float]] = {}
    for name, value in _pairs("rate_limits", text):
        count, slash, period = value.partition("/")
        try:
            jobs, seconds = int(count), float(period)
        except ValueError:
            jobs, seconds = 0, 0.0
        if not slash or jobs < 1 or not seconds > 0:
            raise ConfigError(
                "rate_limits", text, f"queue {name!r}: expected 'jobs/seconds', got {value!r}"
            )
        result[name] = (jobs, seconds)
    return result


class QueueSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How one node's queue behaves; every field is a ``SWITCHYARD_QUEUE_<FIELD>`` variable."""

    concurrency: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=4096,
            description="Queues and their concurrency per node: 'default=5,email=10'.",
        ),
    ] = "default=5,email=10,ai-processing=2,file-processing=3"
    lease_seconds: Annotated[
        float,
        Meta(
            ge=0.1,
            le=3600,
            description="An active job's lease; renewed every third of it while it runs.",
        ),
    ] = 30.0
    rate_limits: Annotated[
        str,
        Meta(max_length=4096, description="Optional per-queue limits: 'email=100/60' (jobs/s)."),
    ] = ""
    max_payload_bytes: Annotated[
        int, Meta(ge=16, le=16_777_216, description="Largest JSON payload of a job, in bytes.")
    ] = 65_536
    max_result_bytes: Annotated[
        int,
        Meta(
            ge=16,
            le=16_777_216,
            description="Largest JSON result of a job; a larger one fails the attempt.",
        ),
    ] = 65_536
    poll_seconds: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="An idle worker looks at its queue at least this often.",
        ),
    ] = 1.0
    outbox_size: Annotated[
        int,
        Meta(ge=1, le=10_000_000, description="Job events that may wait for the socket hub."),
    ] = 10_000
    outbox_lease_seconds: Annotated[
        float,
        Meta(
            ge=0.3,
            le=3600,
            description=(
                "One node drains each queue's job events (Redis); its lease, renewed on every "
                "pass: a dead drainer is replaced within this long."
            ),
        ),
    ] = 5.0
    shutdown_grace_seconds: Annotated[
        float,
        Meta(
            ge=0,
            le=3600,
            description="On shutdown, active jobs have this long before they are handed back.",
        ),
    ] = 10.0

    def __post_init__(self) -> None:
        parse_concurrency(self.concurrency)
        parse_rate_limits(self.rate_limits)

    @property
    def queues(self) -> dict[str, int]:
        """The queues and their concurrency."""
        return parse_concurrency(self.concurrency)

    @property
    def limits(self) -> dict[str, tuple[int, float]]:
        """The rate limits per queue."""
        return parse_rate_limits(self.rate_limits)


QUEUE_SETTINGS = SettingsSection(
    "queue",
    QueueSettings,
    title="Queue",
    description="Background jobs: queues, concurrency, leases, limits and shutdown.",
)
