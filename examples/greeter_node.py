# examples/greeter_node.py
"""A setup hook: one actor and one authenticated route.

Run it with ``python -m runtime --app examples.greeter_node:setup``.
"""

from quart import Blueprint

from runtime import Actor, ChildSpec, NodeSetup, Request, node_context, require_auth


class Greet(Request[str], tag="greeter.greet", frozen=True, kw_only=True):
    """Ask the greeter for a greeting; the reply is a ``str``."""

    name: str


class Greeter(Actor[Greet]):
    async def handle(self, message: Greet) -> str:
        return f"hello {message.name}"


routes = Blueprint("greeter", __name__)


@routes.get("/greet/<name>")
@require_auth()  # a valid bearer token (add role="admin" to require a role)
async def greet(name: str) -> dict[str, str]:
    greeting = await node_context().refs["greeter"].ask(Greet(name=name))  # typed: str
    return {"greeting": greeting}


def setup(node: NodeSetup) -> None:
    node.add_actor(ChildSpec("greeter", Greeter))
    node.add_blueprint(routes)
