# examples/hub_chat.py
"""Rooms from Python: a setup hook with a project policy, and two users who chat.

Run a node with the hook, ``python -m runtime --app examples.hub_chat:setup``,
then connect with the dev token it prints (or any token of the node's secret).
"""

from actors.socket_hub import HUB, NewMessage, RoomJoined
from actors.socket_hub.client import HubClient, HubClientError
from runtime import NodeSetup, Principal


async def members_only(principal: Principal, project_id: str) -> bool:
    """Who may join ``project:<id>``: users whose token lists the project."""
    return project_id in principal.claims.get("projects", ())


def setup(node: NodeSetup) -> None:
    node.require(HUB).set_project_policy(members_only)


async def chat(url: str, alice_token: str, bob_token: str) -> list[str]:
    """Alice and Bob meet in a project room; Bob reads what Alice says."""
    said: list[str] = []
    async with HubClient(url, alice_token) as alice, HubClient(url, bob_token) as bob:
        joined: RoomJoined = await alice.join("project:apollo")
        assert joined.recovered is None  # a first join: nothing to recover
        await bob.join("project:apollo")
        ack = await alice.send("project:apollo", "lift-off at noon")
        message = await bob.next(NewMessage)
        assert message.offset == ack.offset  # every room frame has its offset
        said.append(f"{message.user_name}: {message.message}")
        try:
            await bob.join("admin:ops")  # Bob has no admin role
        except HubClientError as refused:
            said.append(f"refused: {refused.code}")
    return said
