"""The queue's HTTP routes on a real node: ownership, admin, bad input, the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec
from quart.testing import QuartClient

from actors.queue import QUEUE, QUEUE_SETTINGS, EnqueueRequest, QueueSettings
from actors.queue._routes import EnqueueBody
from runtime import NodeSetup, Secret, Settings, TokenVerifier
from runtime.node import compose
from runtime.testing import ManualClock, open_app

if TYPE_CHECKING:
    from actors.queue import JobContext, Queue

SECRET = "queue-routes-test-secret-32-bytes-long"


class SendEmail(msgspec.Struct, frozen=True):
    to: str


def _setup(node: NodeSetup) -> None:
    compose(node)
    jobs = node.require(QUEUE)

    @jobs.handler("send-email", queue="email", payload=SendEmail)
    async def send(ctx: JobContext[SendEmail]) -> object:
        if ctx.payload.to == "fail":
            raise RuntimeError("smtp is down")
        return {"sent": ctx.payload.to}


@asynccontextmanager
async def node() -> AsyncIterator[tuple[QuartClient, dict[str, dict[str, str]], Queue]]:
    clock = ManualClock(wall_start=1_800_000_000.0)
    settings = Settings(jwt_secret=Secret(SECRET))
    sections = {
        QUEUE_SETTINGS: QueueSettings(concurrency="default=1,email=1", max_payload_bytes=256)
    }
    verifier = TokenVerifier(SECRET, clock=clock)
    tokens = {
        name: {"Authorization": f"Bearer {verifier.issue(name, roles=roles)}"}
        for name, roles in (("alice", ("user",)), ("bob", ("user",)), ("root", ("admin",)))
    }
    async with open_app(settings, compose=_setup, clock=clock, sections=sections) as (app, ctx):
        client = app.test_client()
        assert isinstance(client, QuartClient)
        yield client, tokens, ctx.get(QUEUE)


async def _error(response: Any) -> tuple[int, str]:
    return response.status_code, (await response.get_json())["error"]["code"]


def _email(**extra: Any) -> dict[str, Any]:
    # delayed an hour on a ManualClock: the job stays put, so listing and cancel are deterministic
    body = {"type": "send-email", "payload": {"to": "a@example.com"}}
    return body | {"options": {"delay_seconds": 3600}} | extra


async def test_enqueue_get_list_cancel_retry_as_owner() -> None:
    async with node() as (client, tokens, _):
        alice = tokens["alice"]
        created = await client.post("/api/jobs", json=_email(), headers=alice)
        assert created.status_code == 202
        body = await created.get_json()
        assert body["created"] is True and body["id"].startswith("email.")
        job = await (await client.get(f"/api/jobs/{body['id']}", headers=alice)).get_json()
        assert job["user_id"] == "alice" and job["state"] == "delayed"
        assert job["attempts"] == 3 and job["attempt"] == 0 and job["result"] is None
        listed = await client.get("/api/jobs?queue=email&state=delayed", headers=alice)
        assert [j["id"] for j in (await listed.get_json())["jobs"]] == [body["id"]]
        cancelled = await client.post(f"/api/jobs/{body['id']}/cancel", headers=alice)
        assert (await cancelled.get_json())["outcome"] == "cancelled"
        retried = await client.post(f"/api/jobs/{body['id']}/retry", headers=alice)
        assert retried.status_code == 200
        again = await (await client.get(f"/api/jobs/{body['id']}", headers=alice)).get_json()
        assert again["state"] in ("waiting", "active", "completed")


async def test_another_users_job_is_not_found_but_admin_sees_it() -> None:
    async with node() as (client, tokens, _):
        job_id = (
            await (
                await client.post("/api/jobs", json=_email(), headers=tokens["alice"])
            ).get_json()
        )["id"]
        for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
            response = await client.open(
                f"/api/jobs/{job_id}{path}", method=method, headers=tokens["bob"]
            )
            assert await _error(response) == (404, "not_found")
        listed = await client.get("/api/jobs?queue=email&state=delayed", headers=tokens["bob"])
        assert (await listed.get_json())["jobs"] == []
        seen = await client.get(f"/api/jobs/{job_id}", headers=tokens["root"])
        assert (await seen.get_json())["user_id"] == "alice"


async def test_pause_and_resume_are_admin_only() -> None:
    async with node() as (client, tokens, _):
        for action in ("pause", "resume"):
            refused = await client.post(f"/api/queues/email/{action}", headers=tokens["alice"])
            assert await _error(refused) == (403, "insufficient_role")
        paused = await client.post("/api/queues/email/pause", headers=tokens["root"])
        assert paused.status_code == 200
        counts = await (await client.get("/api/queues/email", headers=tokens["alice"])).get_json()
        assert counts["paused"] is True
        await client.post("/api/queues/email/resume", headers=tokens["root"])
        counts = await (await client.get("/api/queues/email", headers=tokens["alice"])).get_json()
        assert counts["paused"] is False
        names = [
            q["name"]
            for q in await (await client.get("/api/queues", headers=tokens["alice"])).get_json()
        ]
        assert "email" in names
        assert await _error(await client.get("/api/queues/nope", headers=tokens["alice"])) == (
            404,
            "unknown_queue",
        )


async def test_bad_input_is_a_clear_4xx_and_nothing_is_stored() -> None:
    async with node() as (client, tokens, _):
        alice = tokens["alice"]
        cases = [
            (_email(queue="nope"), 404, "unknown_queue"),
            ({"type": "nope", "payload": {}}, 404, "unknown_job_type"),
            ({"type": "send-email", "payload": {"to": 3}}, 400, "invalid_payload"),
            (_email(options={"attempts": 0}), 422, "validation_error"),
            (_email(options={"delay_seconds": -1}), 422, "validation_error"),
            ({"type": "send-email", "payload": {"to": "x" * 400}}, 413, "payload_too_large"),
        ]
        for body, status, code in cases:
            assert await _error(await client.post("/api/jobs", json=body, headers=alice)) == (
                status,
                code,
            ), body
        assert await _error(await client.post("/api/jobs", data=b"{", headers=alice)) == (
            400,
            "malformed_json",
        )
        assert await _error(await client.post("/api/jobs", json=_email())) == (401, "missing_token")
        counts = await (await client.get("/api/queues/email", headers=tokens["root"])).get_json()
        assert counts["waiting"] == counts["delayed"] == counts["active"] == 0


async def test_every_queue_route_is_in_the_openapi_document() -> None:
    async with node() as (client, _, _):
        paths = (await (await client.get("/openapi.json")).get_json())["paths"]
        assert {
            "/api/jobs",
            "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/cancel",
            "/api/jobs/{job_id}/retry",
            "/api/queues",
            "/api/queues/{name}",
            "/api/queues/{name}/pause",
            "/api/queues/{name}/resume",
        } <= set(paths)
        assert "requestBody" in paths["/api/jobs"]["post"]


def test_the_documented_body_is_the_enqueue_request() -> None:
    documented = {f.name: (f.default, f.type) for f in msgspec.structs.fields(EnqueueBody)}
    real = {f.name: (f.default, f.type) for f in msgspec.structs.fields(EnqueueRequest)}
    assert documented.keys() == real.keys()
    assert {k: v for k, v in documented.items() if k != "payload"} == {
        k: v for k, v in real.items() if k != "payload"
    }


async def test_a_failed_job_shows_its_result_and_traceback_only_to_an_admin() -> None:
    async with node() as (client, tokens, queue):
        alice = tokens["alice"]
        ok = _email(options={"attempts": 1})
        failing = {"type": "send-email", "payload": {"to": "fail"}, "options": {"attempts": 1}}
        ok_id = (await (await client.post("/api/jobs", json=ok, headers=alice)).get_json())["id"]
        bad_id = (await (await client.post("/api/jobs", json=failing, headers=alice)).get_json())[
            "id"
        ]
        assert (await queue.wait(ok_id, timeout=10)).state == "completed"
        assert (await queue.wait(bad_id, timeout=10)).state == "failed"
        done = await (await client.get(f"/api/jobs/{ok_id}", headers=alice)).get_json()
        assert done["result"] == {"sent": "a@example.com"} and done["attempt"] == 1
        mine = await (await client.get(f"/api/jobs/{bad_id}", headers=alice)).get_json()
        assert mine["error"]["message"] == "smtp is down" and "traceback" not in mine["error"]
        admin = await (await client.get(f"/api/jobs/{bad_id}", headers=tokens["root"])).get_json()
        assert "RuntimeError" in admin["error"]["traceback"]


async def test_a_users_pages_hold_their_own_jobs_however_many_others_come_first() -> None:
    async with node() as (client, tokens, _):

        async def enqueue(user: str, delay: int) -> str:
            body = _email(options={"delay_seconds": delay})
            created = await client.post("/api/jobs", json=body, headers=tokens[user])
            job_id: str = (await created.get_json())["id"]
            return job_id

        # delayed lists run in run_at order: bob's three jobs come before alice's three
        bobs = [await enqueue("bob", 3600 + i) for i in range(3)]
        alices = [await enqueue("alice", 3610 + i) for i in range(3)]

        async def page(user: str, query: str) -> dict[str, Any]:
            listed = await client.get(
                f"/api/jobs?queue=email&state=delayed&{query}", headers=tokens[user]
            )
            assert listed.status_code == 200
            body: dict[str, Any] = await listed.get_json()
            return body

        first = await page("alice", "limit=2")
        assert [j["id"] for j in first["jobs"]] == alices[:2]  # full, though bob's came first
        assert (first["next_cursor"], first["next_offset"]) == (5, 0)
        second = await page("alice", "limit=2&offset=2")
        assert [j["id"] for j in second["jobs"]] == alices[2:]
        assert second["next_cursor"] is None and second["offset"] == 2
        resumed = await page("alice", f"limit=2&cursor={first['next_cursor']}")
        assert [j["id"] for j in resumed["jobs"]] == alices[2:] and resumed["cursor"] == 5
        assert [j["id"] for j in (await page("bob", "limit=5"))["jobs"]] == bobs
        admin = await page("root", "limit=4")
        assert [j["id"] for j in admin["jobs"]] == bobs + alices[:1]
        assert admin["next_cursor"] == 4
        refused = await client.get(
            "/api/jobs?queue=email&state=delayed&cursor=-1", headers=tokens["alice"]
        )
        assert await _error(refused) == (422, "validation_error")
