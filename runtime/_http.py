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
from quart import (
    Quart,
    Request,
    Response,
    g,
    has_request_context,
    has_websocket_context,
    request,
    websocket,
)
from quart.ctx import _AppCtxGlobals
from quart.globals import _cv_app, _cv_request
from quart_cors import cors
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestTimeout
from werkzeug.routing.exceptions import WebsocketMismatch

from ._access_log import install_access_log
from ._auth import AuthError, Principal, require_role
from ._edge_auth import authenticate, handshake_principal, missing_token
from ._errors import ActorCrashed, ActorStopped, AskTimeout, Rejected
from ._health import health_blueprint
from ._http_stats import REQUEST_ID_SCOPE_KEY, HttpCounters
from ._index import index_blueprint
from ._openapi import install_openapi
from ._responses import error_response, json_response
from ._route_memo import memoize_matches
from ._ws_connection import (
    close_code_for_status,
    close_websocket,
    connection_state,
    counters_of_current_app,
    install_websocket_counters,
)
from ._ws_frames import ErrorFrame, encode_frame
from ._ws_origin import origin_guard

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from quart import Blueprint
    from quart.typing import ResponseTypes

    from ._edge_auth import TokenSource
    from ._node_context import NodeContext

__all__ = [
    "ApiError",
    "authenticate",
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
_WEBSOCKET_SOURCES: tuple[TokenSource, ...] = ("header", "query")
_MAX_PATH_SHOWN = 200

# The stable error code for each HTTP status we answer with.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
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
    "busy": 503,
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

    Malformed covers bad syntax and invalid UTF-8 (400 ``malformed_json``).

    The body size is bounded by ``max_body_bytes`` (413 beyond it).
    """
    body = await request.get_data(as_text=False)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        # msgspec checks UTF-8 only inside strings, and raises this (not a DecodeError).
        problem = f"a string holds invalid UTF-8 (byte 0x{exc.object[exc.start]:02x})"
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {problem}") from exc


def node_context() -> NodeContext:
    """The running node (settings, refs, Redis link) from inside a request."""
    app_context = _cv_app.get(None)  # Quart's current_app, without its proxy
    if app_context is None:
        raise RuntimeError("node_context() needs an app context (a request or WebSocket)")
    context: NodeContext = app_context.app.extensions[_EXTENSION]
    return context


def current_principal() -> Principal:
    """The authenticated caller of this request (set by :func:`require_auth`)."""
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise RuntimeError("current_principal() needs the route to be decorated with @require_auth")
    return principal


def require_auth(role: str | None = None) -> Callable[[Handler], Handler]:
    """Decorate a route: it needs a valid bearer token (and ``role``, when given).

    On an HTTP route the token comes from the ``Authorization: Bearer``
    header. On a ``websocket`` route it comes from that header or, since
    browsers cannot set headers on a WebSocket, the ``token`` query parameter;
    the check runs before the upgrade is accepted, so a failure refuses it with
    the same JSON 401/403 (for first-frame auth, use ``authenticate_websocket``
    in the route instead). Answers 401 with a precise code when the token is
    missing or invalid, 403 when the role is missing. The principal is then
    :func:`current_principal`.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            # The context variables behind Quart's proxies, read once (each proxy costs a lookup).
            app_context = _cv_app.get()
            verifier = app_context.app.extensions[_EXTENSION].verifier
            if has_websocket_context():
                found = handshake_principal(verifier, _WEBSOCKET_SOURCES)
                if found is None:
                    raise missing_token(_WEBSOCKET_SOURCES)
                principal = found
            else:
                header = _cv_request.get().request.headers.get("Authorization")
                principal = authenticate(verifier, header)
            if role is not None and role not in principal.roles:
                require_role(principal, role)  # raises insufficient_role
            app_context.g.principal = principal
            return await handler(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def create_app(context: NodeContext, blueprints: Sequence[Blueprint] = ()) -> Quart:
    """Build the node's Quart app around a running node; no module-level app exists."""
    settings = context.settings
    app = Quart("switchyard")
    app.request_class = _NodeRequest
    app.app_ctx_globals_class = _NodeGlobals
    memoize_matches(app.url_map)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = settings.body_timeout_seconds
    app.config["JSON_SORT_KEYS"] = False
    app.extensions[_EXTENSION] = context
    # HTTP request ids and counters: one ASGI layer, inside the access log (which reads
    # the id from the response). A WebSocket's request id is assigned by hooks.
    HttpCounters().install(app)
    install_access_log(app, context.clock)
    install_websocket_counters(app)
    app.before_websocket(_assign_websocket_request_id)
    app.before_websocket(origin_guard(settings.cors_origins))
    app.after_websocket(_echo_websocket_request_id)
    _register_error_handlers(app)
    install_openapi(app)  # /openapi.json and /docs describe every route below
    app.register_blueprint(health_blueprint)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.register_blueprint(index_blueprint)  # after the others: an app's own "/" wins
    if settings.cors_origins:
        origins = list(settings.cors_origins)
        websocket_hooks = list(app.before_websocket_funcs[None])
        app = cors(
            app,
            allow_origin="*" if origins == ["*"] else origins,
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            max_age=600,
        )
        # quart_cors adds its own WebSocket Origin check (a bare 400, and it refuses
        # clients that send no Origin); origin_guard above is the node's, so drop it.
        app.before_websocket_funcs[None][:] = websocket_hooks
    return app


class _NodeRequest(Request):
    """Quart's request, remembering its blueprint names (Quart asks three times a request)."""

    _blueprints: tuple[object, list[str]] | None = None

    @property
    def blueprints(self) -> list[str]:
        """The names of the current blueprints, innermost first (see Quart's ``Request``)."""
        known, rule = self._blueprints, self.url_rule
        if known is None or known[0] is not rule:
            known = self._blueprints = (rule, super().blueprints)
        return list(known[1])


class _NodeGlobals(_AppCtxGlobals):
    """Quart's ``g``; in an HTTP request, ``g.request_id`` reads the id the edge assigned."""

    def __getattr__(self, name: str) -> Any:
        if name == "request_id":
            found = _http_request_id()
            if found is not None:
                return found
        return super().__getattr__(name)

    def get(self, name: str, default: Any | None = None) -> Any:
        """``g.name``, or ``default`` when it is unset."""
        if name == "request_id" and "request_id" not in self.__dict__:
            found = _http_request_id()
            return default if found is None else found
        return super().get(name, default)


def _http_request_id() -> str | None:
    """The id :meth:`HttpCounters.install` gave the current HTTP request, if in one."""
    if not has_request_context():
        return None
    found = request.scope.get(REQUEST_ID_SCOPE_KEY)
    return found if isinstance(found, str) else None


def _request_id(inbound: str) -> str:
    return inbound if _REQUEST_ID.match(inbound) else uuid.uuid4().hex


async def _assign_websocket_request_id() -> None:
    g.request_id = _request_id(websocket.headers.get("X-Request-ID", ""))


async def _echo_websocket_request_id(response: ResponseTypes | None) -> ResponseTypes | None:
    # Quart sends a response here only to refuse an upgrade (before accept).
    request_id = g.get("request_id")
    if response is not None and request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def _describe() -> str:
    """``GET /path`` or ``WEBSOCKET /path`` for logs and messages, in any context."""
    if has_websocket_context():
        return f"WEBSOCKET {websocket.path[:_MAX_PATH_SHOWN]}"
    if has_request_context():
        return f"{request.method} {request.path[:_MAX_PATH_SHOWN]}"
    return "(no request)"


async def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """Answer an error in whichever context raised it.

    In an HTTP request, and on a WebSocket before accept (Quart then refuses
    the upgrade with it), this is the JSON error response. On an accepted
    WebSocket, the client gets an error frame and a close with the code for
    ``status`` (the response returned is then ignored by Quart).
    """
    if has_websocket_context():
        counters = counters_of_current_app()
        if not connection_state().accepted:
            counters.reject(code)
        else:
            if status in (401, 403):
                counters.reject(code)  # first-frame authentication failed
            await _close_with_error_frame(status, code, message)
    response = error_response(status, code, message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def _close_with_error_frame(status: int, code: str, message: str) -> None:
    if connection_state().closed:
        return
    counters = counters_of_current_app()
    with node_context().clock.move_on_after(node_context().settings.shutdown_grace_seconds):
        await websocket.send(encode_frame(ErrorFrame(code=code, message=message)))
        counters.frames_out += 1
        counters.error_frames += 1
    await close_websocket(close_code_for_status(status), code)


def _http_error_message(exc: HTTPException, status: int) -> str:
    """Our own words for routing errors; an ``abort()`` with a description keeps its own."""
    where = _describe()
    path = where.partition(" ")[2]
    if isinstance(exc, WebsocketMismatch):
        if has_websocket_context():
            return f"{path} is an HTTP route; it does not accept a WebSocket upgrade"
        return f"{path} is a WebSocket route; connect to it with a WebSocket upgrade"
    if status == 404 and exc.description in (None, NotFound.description):
        if has_websocket_context():
            return f"no WebSocket route for {path}"
        return f"no route for {where}"
    if status == 405 and exc.description in (None, MethodNotAllowed.description):
        allowed = [v for k, v in exc.get_headers() if k.lower() == "allow"]
        listed = f"; allowed: {allowed[0]}" if allowed else ""
        return f"method {where.partition(' ')[0]} is not allowed for {path}{listed}"
    return exc.description or exc.name


def _register_error_handlers(app: Quart) -> None:
    # Every handler works in HTTP and WebSocket contexts alike (see _error).
    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return await _error(exc.status, exc.code, exc.message)

    @app.errorhandler(AuthError)
    async def auth_error(exc: AuthError) -> Response:
        challenge = {"WWW-Authenticate": 'Bearer realm="switchyard"'} if exc.status == 401 else {}
        return await _error(exc.status, exc.code, exc.message, challenge)

    @app.errorhandler(Rejected)
    async def rejected(exc: Rejected) -> Response:
        return await _error(REJECTION_STATUS.get(exc.code, 400), exc.code, exc.message)

    @app.errorhandler(AskTimeout)
    @app.errorhandler(ActorStopped)
    @app.errorhandler(ActorCrashed)
    async def actor_unavailable(exc: Exception) -> Response:
        # The node is overloaded, restarting or stopping: a retryable 503, logged once.
        logger.warning("%s (request id %s): %s", _describe(), g.get("request_id"), exc)
        message = "the service is busy or restarting; retry"
        return await _error(503, "unavailable", message, {"Retry-After": "1"})

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = STATUS_CODES.get(status, "http_error")
        message = _http_error_message(exc, status)
        settings = node_context().settings
        if status == 413:
            message = f"request body exceeds the limit of {settings.max_body_bytes} bytes"
        elif status == 408 and exc.description == RequestTimeout.description:
            message = (
                f"the request body did not arrive within {settings.body_timeout_seconds:g}s "
                "(body_timeout_seconds)"
            )
        allow = [v for k, v in exc.get_headers() if status == 405 and k.lower() == "allow"]
        return await _error(status, code, message, {"Allow": allow[0]} if allow else None)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        request_id = g.get("request_id", "-")
        logger.error("unhandled error in %s (request id %s)", _describe(), request_id, exc_info=exc)
        return await _error(
            500, "internal_error", f"internal server error; quote request id {request_id}"
        )
