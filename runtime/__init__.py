"""Switchyard's runtime: actors, supervision, configuration and the node's edge.

Implementation lives in private modules; this package re-exports the public
names, and ``actors/`` use only these.
"""

from ._actor import Actor as Actor
from ._actor import ActorContext as ActorContext
from ._boot import NodeSetup as NodeSetup
from ._boot import run_node as run_node
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._errors import ActorCrashed as ActorCrashed
from ._errors import ActorStopped as ActorStopped
from ._errors import ActorSystemError as ActorSystemError
from ._errors import AskTimeout as AskTimeout
from ._errors import ConfigError as ConfigError
from ._errors import MailboxFull as MailboxFull
from ._errors import RedisUnavailable as RedisUnavailable
from ._errors import Rejected as Rejected
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._http import ApiError as ApiError
from ._http import current_principal as current_principal
from ._http import decode_body as decode_body
from ._http import node_context as node_context
from ._http import require_auth as require_auth
from ._mailbox import ActorState as ActorState
from ._mailbox import ActorStatistics as ActorStatistics
from ._protocol import ErrorBody as ErrorBody
from ._protocol import ErrorReply as ErrorReply
from ._protocol import Message as Message
from ._protocol import message_tag as message_tag
from ._ref import ActorRef as ActorRef
from ._ref import Refs as Refs
from ._supervisor import ChildSpec as ChildSpec
from ._supervisor import RestartType as RestartType
from ._supervisor import Strategy as Strategy
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorSpec as SupervisorSpec

__all__ = [
    "Actor",
    "ActorContext",
    "ActorCrashed",
    "ActorRef",
    "ActorState",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystemError",
    "ApiError",
    "AskTimeout",
    "ChildSpec",
    "Clock",
    "ConfigError",
    "ErrorBody",
    "ErrorReply",
    "MailboxFull",
    "Message",
    "NodeSetup",
    "RedisUnavailable",
    "Refs",
    "Rejected",
    "RestartIntensityExceeded",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SystemClock",
    "current_principal",
    "decode_body",
    "message_tag",
    "node_context",
    "require_auth",
    "run_node",
]
