"""The blueprint's three background jobs, as a Switchyard app hook.

Run it with ``python -m runtime --app examples.blueprint:setup`` (or
``./dev run --app examples.blueprint:setup``), then, with the dev token the
node prints::

    curl -s -X POST localhost:8000/api/jobs -H "authorization: Bearer $TOKEN" \\
         -H 'content-type: application/json' \\
         -d '{"type": "send-email", "payload": {"to": "ada@example.com", "subject": "Hi"}}'
    curl -s localhost:8000/api/jobs/<id> -H "authorization: Bearer $TOKEN"

Each handler reports its stages with ``ctx.progress``; a WebSocket client of
the same user sees them as ``task_progress`` frames in its personal room
(``user:<sub>``), and on reconnect it recovers those it missed. The queues
and their concurrency are the node's ``SWITCHYARD_QUEUE_CONCURRENCY``
(default ``default=5,email=10,ai-processing=2,file-processing=3``).

The stages sleep to stand in for real work (an SMTP call, a model, a parser);
``SWITCHYARD_EXAMPLE_WORK_SCALE`` scales those sleeps (0 makes them instant).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
import msgspec
from msgspec import Meta

from actors.queue import QUEUE

if TYPE_CHECKING:
    from actors.queue import JobContext
    from runtime import NodeSetup

__all__ = [
    "AiAnalysis",
    "FileProcessing",
    "SendEmail",
    "analyse",
    "process_file",
    "send_email",
    "setup",
]


class SendEmail(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A message to send: recipient, subject and an optional body."""

    to: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    subject: Annotated[str, Meta(min_length=1, max_length=200)]
    body: Annotated[str, Meta(max_length=20_000)] = ""


class AiAnalysis(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A text to analyse, and which analysis to run on it."""

    text: Annotated[str, Meta(min_length=1, max_length=50_000)]
    analysis: Literal["sentiment", "summary", "keywords"] = "sentiment"


class FileProcessing(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A file to process: its name and size, and what to make of it."""

    filename: Annotated[str, Meta(min_length=1, max_length=255)]
    size_bytes: Annotated[int, Meta(ge=0, le=10_000_000_000)]
    operation: Literal["thumbnail", "transcode", "scan"] = "scan"


def _scale() -> float:
    return float(os.environ.get("SWITCHYARD_EXAMPLE_WORK_SCALE", "1"))


async def _work(seconds: float) -> None:
    """Stand in for real work (a network call, a model, a parser)."""
    await anyio.sleep(seconds * _scale())


async def send_email(ctx: JobContext[SendEmail]) -> dict[str, str]:
    """Render, connect, send: about half a second, in three stages."""
    email = ctx.payload
    await ctx.progress(10, stage="render", message=f"Rendering '{email.subject}'")
    await _work(0.1)
    await ctx.progress(40, stage="connect", message="Connecting to the mail server")
    await _work(0.2)
    await ctx.progress(80, stage="send", message=f"Sending to {email.to}")
    await _work(0.2)
    message_id = hashlib.blake2b(f"{ctx.job_id}{email.to}".encode(), digest_size=8).hexdigest()
    return {"message_id": f"<{message_id}@switchyard.local>", "to": email.to}


async def analyse(ctx: JobContext[AiAnalysis]) -> dict[str, object]:
    """Tokenise, run the model, summarise: a few seconds, as a model call takes."""
    words = ctx.payload.text.split()
    await ctx.progress(5, stage="tokenise", message=f"{len(words)} words")
    await _work(0.3)
    for step in range(1, 5):
        await ctx.progress(5 + step * 20, stage="model", message=f"Pass {step} of 4")
        await _work(0.5)
    await ctx.progress(95, stage="summarise")
    positive = sum(word.lower().strip(".,!?") in {"good", "great", "love"} for word in words)
    negative = sum(word.lower().strip(".,!?") in {"bad", "awful", "hate"} for word in words)
    score = 0.0 if positive == negative else (positive - negative) / (positive + negative)
    return {"analysis": ctx.payload.analysis, "words": len(words), "score": score}


async def process_file(ctx: JobContext[FileProcessing]) -> dict[str, object]:
    """Download, process in chunks, upload: time grows with the file's size."""
    file = ctx.payload
    chunks = max(1, min(10, file.size_bytes // 1_000_000))
    await ctx.progress(0, stage="download", message=file.filename)
    await _work(0.2)
    for chunk in range(1, chunks + 1):
        await ctx.progress(
            10 + 80 * chunk / chunks, stage=file.operation, message=f"Chunk {chunk}/{chunks}"
        )
        await _work(0.15)
    await ctx.progress(95, stage="upload")
    await _work(0.1)
    return {"filename": file.filename, "operation": file.operation, "chunks": chunks}


def setup(node: NodeSetup) -> None:
    """Register the three job types with the node's queue."""
    jobs = node.require(QUEUE)
    jobs.handler("send-email", queue="email", payload=SendEmail)(send_email)
    jobs.handler("ai-analysis", queue="ai-processing", payload=AiAnalysis)(analyse)
    jobs.handler("file-processing", queue="file-processing", payload=FileProcessing)(process_file)
