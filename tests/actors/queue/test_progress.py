"""Progress and completion reach a connected WebSocket client of the job's user via the hub."""

from __future__ import annotations

import pytest

from actors.queue import QUEUE, QUEUE_SETTINGS, JobContext, QueueSettings
from actors.socket_hub import HUB
from runtime import NodeSetup, Secret, Settings
from runtime.node import compose
from runtime.testing import open_app, serve_app
from tests.actors.socket_hub.hub_support import SECRET, HubNode

from .queue_support import WAIT, Email

pytestmark = pytest.mark.e2e


def _node(setup: NodeSetup) -> None:
    compose(setup)
    queue = setup.require(QUEUE)

    @queue.handler("send-email", queue="email", payload=Email)
    async def send(ctx: JobContext[Email]) -> object:
        await ctx.progress(40, stage="rendering", message="building the message")
        return {"sent_to": ctx.payload.to}


async def test_progress_and_completion_reach_the_users_websocket() -> None:
    async with (
        open_app(
            Settings(jwt_secret=Secret(SECRET)),
            compose=_node,
            sections={QUEUE_SETTINGS: QueueSettings(poll_seconds=0.05)},
        ) as (app, context),
        serve_app(app) as url,
    ):
        node = HubNode(url=url, app=app, context=context, clock=context.clock, hub=context.get(HUB))
        queue = context.get(QUEUE)
        async with node.client("alice") as alice, node.client("bob") as bob:
            added = await queue.enqueue("send-email", {"to": "a@x.org"}, user_id="alice")
            running = await alice.expect("task_progress", timeout_seconds=WAIT)
            assert running["task_id"] == added.id and running["room"] == "user:alice"
            assert (running["percentage"], running["stage"], running.get("state", "running")) == (
                40,
                "rendering",
                "running",
            )
            done = await alice.expect("task_progress", timeout_seconds=WAIT)
            assert (done["state"], done["percentage"]) == ("completed", 100)
            assert done["result"] == {"sent_to": "a@x.org"}
            job = await queue.wait(added.id, timeout=WAIT)
            assert job.state == "completed"
            await bob.quiet()
