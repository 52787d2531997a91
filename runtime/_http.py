"""The HTTP edge: the Quart app factory, JSON errors, request ids, auth and CORS.

Handlers translate between HTTP and actor messages and do nothing else. Every
error response has one shape, ``{"error": {"code": ..., "message": ...}}``;
an unexpected exception is logged once with the request id and answered 500
without internals.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from quart import Quart, Response, current_app, g, request, websocket
from quart_cors import cors
from werkzeug.exceptions import HTTPException

from ._access_log import install_access_log
from ._auth import AuthError, Principal, TokenVerifier, require_role
from ._errors import ActorCrashed, ActorStopped, AskTimeout, Rejected
from ._health import health_blueprint
from ._http_stats import HttpCounters
from ._index import index_blueprint
from ._responses import error_response, json_response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from quart import Blueprint

    from ._node_context import NodeContext

__all__ = [
    "ApiError",
    "create_app",
    "current_principal",
    "decode_body",
    "json_response",
    "node_context",
    "require_auth",
]

logger = logging.getLogger("runtime.http")

T = TypeVar("T")
Handler = TypeVar("Handler", bound="Callable[..., Awaitable[Any]]")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_EXTENSION = "switchyard"

# The stable error code for each HTTP status we answer with.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# How actor-level rejection codes map onto HTTP statuses (default 400).
REJECTION_STATUS: dict[str, int] = {
    "not_found": 404,
    "forbidden": 403,
    "conflict": 409,
    "payload_too_large": 413,
    "value_too_large": 413,
    "validation_error": 422,
    "rate_limited": 429,
    "unavailable": 503,
}


class ApiError(Exception):
    """Raise from a route to answer with a JSON error of this status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


async def decode_body(kind: type[T]) -> T:
    """Decode the JSON request body into ``kind``; 400 if malformed, 422 if invalid.

    The body size is bounded by ``max_body_bytes`` (413 beyond it).
    """
    body = await request.get_data(as_text=False)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc


def node_context() -> NodeContext:
    """The running node (settings, refs, Redis link) from inside a request."""
    context: NodeContext = current_app.extensions[_EXTENSION]
    return context


def current_principal() -> Principal:
    """The authenticated caller of this request (set by :func:`require_auth`)."""
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise RuntimeError("current_principal() needs the route to be decorated with @require_auth")
    return principal


def authenticate(verifier: TokenVerifier | None, header: str | None) -> Principal:
    """Verify a bearer token; the same check serves HTTP routes and WebSockets."""
    if verifier is None:
        raise AuthError(
            "missing_token",
            "this node has no JWT secret configured (set SWITCHYARD_JWT_SECRET), "
            "so it cannot accept any token",
        )
    return verifier.verify_authorization_header(header)


def require_auth(role: str | None = None) -> Callable[[Handler], Handler]:
    """Decorate a route: it needs a valid bearer token (and ``role``, when given).

    Answers 401 with a precise code when the token is missing or invalid, 403
    when the role is missing. The principal is then :func:`current_principal`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization")
            principal = authenticate(node_context().verifier, header)
            if role is not None:
                require_role(principal, role)
            g.principal = principal
            return await handler(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def create_app(context: NodeContext, blueprints: Sequence[Blueprint] = ()) -> Quart:
    """Build the node's Quart app around a running node; no module-level app exists."""
    settings = context.settings
    app = Quart("switchyard")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.extensions[_EXTENSION] = context
    install_access_log(app, context.clock)
    app.before_request(_assign_request_id)
    app.before_websocket(_assign_websocket_request_id)
    app.after_request(_echo_request_id)
    HttpCounters().install(app)
    _register_error_handlers(app)
    app.register_blueprint(health_blueprint)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.register_blueprint(index_blueprint)  # after the others: an app's own "/" wins
    if settings.cors_origins:
        origins = list(settings.cors_origins)
        app = cors(
            app,
            allow_origin="*" if origins == ["*"] else origins,
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            max_age=600,
        )
    return app


def _request_id(inbound: str) -> str:
    return inbound if _REQUEST_ID.match(inbound) else uuid.uuid4().hex


async def _assign_request_id() -> None:
    g.request_id = _request_id(request.headers.get("X-Request-ID", ""))


async def _assign_websocket_request_id() -> None:
    g.request_id = _request_id(websocket.headers.get("X-Request-ID", ""))


async def _echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def _register_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(AuthError)
    async def auth_error(exc: AuthError) -> Response:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="switchyard"'
        return response

    @app.errorhandler(Rejected)
    async def rejected(exc: Rejected) -> Response:
        return error_response(REJECTION_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.errorhandler(AskTimeout)
    @app.errorhandler(ActorStopped)
    @app.errorhandler(ActorCrashed)
    async def actor_unavailable(exc: Exception) -> Response:
        # The node is overloaded, restarting or stopping: a retryable 503, logged once.
        logger.warning("request %s: %s", g.get("request_id"), exc)
        response = error_response(503, "unavailable", "the service is busy or restarting; retry")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = STATUS_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            message = (
                f"request body exceeds the limit of {node_context().settings.max_body_bytes} bytes"
            )
        response = error_response(status, code, message)
        if status == 405 and exc.get_headers():
            for name, value in exc.get_headers():
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        request_id = g.get("request_id", "-")
        logger.error(
            "unhandled error in %s %s (request id %s)",
            request.method,
            request.path,
            request_id,
            exc_info=exc,
        )
        return error_response(
            500, "internal_error", f"internal server error; quote request id {request_id}"
        )
