"""The node's one described API: ``GET /openapi.json`` and ``GET /docs`` (quart-schema).

Every HTTP route of the node appears in the document (quart-schema walks the
app's URL map, so a route cannot be left out); routes say what they take and
answer with quart-schema's ``document_*``/``validate_*`` decorators and the
node's msgspec Structs. Every route may answer the node's one error shape
(:class:`ErrorReply`), and a body that quart-schema's ``validate_request``
refuses is answered ``422 validation_error`` in that shape too. Security: a
bearer JWT (``Authorization: Bearer <token>``).
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import TYPE_CHECKING, Any, TypeVar

from quart_schema import (
    QuartSchema,
    RequestSchemaValidationError,
    document_response,
    security_scheme,
)

from ._protocol import ErrorReply
from ._responses import error_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from quart import Quart, Response

F = TypeVar("F", bound="Callable[..., Any]")

__all__ = [
    "BEARER",
    "ERROR_SCHEMA",
    "OPENAPI_PATH",
    "SWAGGER_PATH",
    "document_errors",
    "install_openapi",
    "public",
]

#: Where the document and its Swagger UI are served.
OPENAPI_PATH = "/openapi.json"
SWAGGER_PATH = "/docs"

#: The name of the security scheme in the document, for ``security_scheme([{BEARER: []}])``.
BEARER = "bearer"

#: The error envelope, for ``document_response(ERROR_SCHEMA, status)``.
ERROR_SCHEMA = ErrorReply


def document_errors(*statuses: int) -> Callable[[F], F]:
    """Document that a route may answer each of ``statuses`` with the node's error shape."""

    def decorate(handler: F) -> F:
        for status in statuses:
            handler = document_response(ERROR_SCHEMA, status)(handler)
        return handler

    return decorate


def public(handler: F) -> F:
    """Document a route that needs no token (the document's default is the bearer JWT)."""
    decorated: F = security_scheme([])(handler)
    return decorated


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("switchyard")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def install_openapi(app: Quart) -> QuartSchema:
    """Serve the node's OpenAPI document and docs, and answer schema errors in the node's shape."""
    schema = QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        swagger_ui_path=SWAGGER_PATH,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Switchyard node", "version": _version()},
        security_schemes={BEARER: {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{BEARER: []}],
        conversion_preference="msgspec",
    )

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        # the most specific handler wins over the node's HTTPException one (a plain 400)
        return error_response(422, "validation_error", str(exc.validation_error))

    return schema
