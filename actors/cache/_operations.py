"""The changes the cache sends to Redis, in the order its L1 saw them."""

from __future__ import annotations

import msgspec

from ._completion import Completion

__all__ = ["BulkDelete", "Delete", "Operation", "Put"]


class Put(msgspec.Struct, kw_only=True):
    """Store ``blob`` at ``key`` for ``ttl_seconds``, indexed under ``tag_keys``."""

    key: str
    blob: bytes
    ttl_seconds: float
    tag_keys: tuple[str, ...]
    completion: Completion


class Delete(msgspec.Struct, kw_only=True):
    """Delete ``keys`` (full, namespaced keys)."""

    keys: tuple[str, ...]
    completion: Completion


class BulkDelete(msgspec.Struct, kw_only=True):
    """Delete by a full-key glob (``pattern``) or by a tag (``tag`` and its ``tag_key``)."""

    completion: Completion
    pattern: str | None = None
    tag: str | None = None
    tag_key: str | None = None


Operation = Put | Delete | BulkDelete
