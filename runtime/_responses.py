"""JSON responses encoded once with msgspec, and the one error shape of every edge."""

from __future__ import annotations

import msgspec
from quart import Response

from ._protocol import ErrorReply

__all__ = ["error_response", "json_response"]


def json_response(body: object, status: int = 200) -> Response:
    """Encode ``body`` (Structs, dicts, lists) with msgspec into a JSON response."""
    return Response(msgspec.json.encode(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    """``{"error": {"code": code, "message": message}}`` with ``status``."""
    return json_response(ErrorReply.of(code, message), status)
