"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec
from quart import Blueprint, Response, current_app
from quart_schema import document_response

from ._openapi import public
from ._responses import json_response

if TYPE_CHECKING:
    from ._node_context import NodeContext

from ._mailbox import ActorState
from ._redis import RedisStatus

__all__ = ["Liveness", "Readiness", "health_blueprint", "readiness"]

health_blueprint = Blueprint("health", __name__)


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    """The liveness answer: ``{"status": "ok"}``."""

    status: Literal["ok"] = "ok"


_OK = msgspec.json.encode(Liveness())


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """The readiness report: ``ready`` only when every actor and service runs and Redis is up."""

    status: Literal["ready", "not_ready"]
    reasons: list[str]
    actors: dict[str, ActorState]
    services: dict[str, ActorState]
    redis: RedisStatus | None


def readiness(context: NodeContext) -> Readiness:
    """Assess the node: every actor running, Redis up where configured, not shutting down.

    Each package's readiness check (``NodeSetup.add_readiness_check``) adds its reason.
    """
    reasons: list[str] = []
    if context.stopping.is_set():
        reasons.append("the node is shutting down")
    actors = context.supervisor.actor_states()
    reasons.extend(
        f"actor {actor_id} is {state}" for actor_id, state in actors.items() if state != "running"
    )
    services = context.supervisor.service_states()
    reasons.extend(
        f"service {service_id} is {state}"
        for service_id, state in services.items()
        if state != "running"
    )
    redis_status = context.redis.status() if context.redis is not None else None
    if redis_status is not None and not redis_status.up:
        reasons.append(f"redis is down: {redis_status.last_error or 'not connected yet'}")
    for check in context.readiness_checks.values():
        reason = check()
        if reason is not None:
            reasons.append(reason)
    return Readiness(
        status="not_ready" if reasons else "ready",
        reasons=reasons,
        actors=actors,
        services=services,
        redis=redis_status,
    )


@health_blueprint.get("/healthz")
@public
@document_response(Liveness)
async def healthz() -> Response:
    """Liveness: the process serves HTTP."""
    return Response(_OK, content_type="application/json")


@health_blueprint.get("/readyz")
@public
@document_response(Readiness)
@document_response(Readiness, 503)
async def readyz() -> Response:
    """Readiness: 200 when the node can do its work, 503 with the reasons otherwise."""
    report = readiness(current_app.extensions["switchyard"])
    return json_response(report, 200 if report.status == "ready" else 503)
