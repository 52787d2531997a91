"""Switchyard's runtime: actors, supervision, configuration and the node's edge.

Implementation lives in private modules; this package re-exports the public
names, and ``actors/`` use only these. ``runtime.testing`` holds the helpers
for embedding actors in tests and programs.
"""

from ._actor import Actor as Actor
from ._actor import ActorContext as ActorContext
from ._auth import AuthError as AuthError
from ._auth import Principal as Principal
from ._auth import TokenVerifier as TokenVerifier
from ._boot import NodeSetup as NodeSetup
from ._boot import assemble_node as assemble_node
from ._boot import run_node as run_node
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._configuration import Configuration as Configuration
from ._configuration import load_configuration as load_configuration
from ._configuration import load_settings as load_settings
from ._errors import ActorCrashed as ActorCrashed
from ._errors import ActorStopped as ActorStopped
from ._errors import ActorSystemError as ActorSystemError
from ._errors import AskTimeout as AskTimeout
from ._errors import ConfigError as ConfigError
from ._errors import MailboxFull as MailboxFull
from ._errors import RedisUnavailable as RedisUnavailable
from ._errors import Rejected as Rejected
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._fanout import Fanout as Fanout
from ._fanout import FanoutStatistics as FanoutStatistics
from ._fanout import Gap as Gap
from ._fanout import MemoryFanout as MemoryFanout
from ._fanout import RedisFanout as RedisFanout
from ._fanout import Subscription as Subscription
from ._health import Readiness as Readiness
from ._http import ApiError as ApiError
from ._http import create_app as create_app
from ._http import current_principal as current_principal
from ._http import decode_body as decode_body
from ._http import node_context as node_context
from ._http import require_auth as require_auth
from ._logging import configure_logging as configure_logging
from ._mailbox import ActorState as ActorState
from ._mailbox import ActorStatistics as ActorStatistics
from ._node_context import NodeContext as NodeContext
from ._protocol import ErrorBody as ErrorBody
from ._protocol import ErrorReply as ErrorReply
from ._protocol import Message as Message
from ._protocol import message_tag as message_tag
from ._redis import RedisLink as RedisLink
from ._redis import RedisStatus as RedisStatus
from ._redis import redis_key as redis_key
from ._ref import ActorRef as ActorRef
from ._ref import Refs as Refs
from ._responses import error_response as error_response
from ._responses import json_response as json_response
from ._sections import SettingsSection as SettingsSection
from ._settings import Secret as Secret
from ._settings import Settings as Settings
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
    "AuthError",
    "ChildSpec",
    "Clock",
    "ConfigError",
    "Configuration",
    "ErrorBody",
    "ErrorReply",
    "Fanout",
    "FanoutStatistics",
    "Gap",
    "MailboxFull",
    "MemoryFanout",
    "Message",
    "NodeContext",
    "NodeSetup",
    "Principal",
    "Readiness",
    "RedisFanout",
    "RedisLink",
    "RedisStatus",
    "RedisUnavailable",
    "Refs",
    "Rejected",
    "RestartIntensityExceeded",
    "RestartType",
    "Secret",
    "Settings",
    "SettingsSection",
    "Strategy",
    "Subscription",
    "Supervisor",
    "SupervisorSpec",
    "SystemClock",
    "TokenVerifier",
    "assemble_node",
    "configure_logging",
    "create_app",
    "current_principal",
    "decode_body",
    "error_response",
    "json_response",
    "load_configuration",
    "load_settings",
    "message_tag",
    "node_context",
    "redis_key",
    "require_auth",
    "run_node",
]
