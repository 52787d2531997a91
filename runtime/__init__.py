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
from ._channel import Channel as Channel
from ._channel import ChannelSpec as ChannelSpec
from ._channel import ChannelStatistics as ChannelStatistics
from ._channel import ChannelSubscription as ChannelSubscription
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._configuration import Configuration as Configuration
from ._configuration import load_configuration as load_configuration
from ._configuration import load_settings as load_settings
from ._edge_auth import TokenSource as TokenSource
from ._errors import ActorCrashed as ActorCrashed
from ._errors import ActorStopped as ActorStopped
from ._errors import ActorSystemError as ActorSystemError
from ._errors import AskTimeout as AskTimeout
from ._errors import ConfigError as ConfigError
from ._errors import MailboxFull as MailboxFull
from ._errors import RedisUnavailable as RedisUnavailable
from ._errors import Rejected as Rejected
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._extensions import Extension as Extension
from ._extensions import Extensions as Extensions
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
from ._http_stats import HttpStatistics as HttpStatistics
from ._logging import configure_logging as configure_logging
from ._mailbox import ActorState as ActorState
from ._mailbox import ActorStatistics as ActorStatistics
from ._node_context import NodeContext as NodeContext
from ._node_keys import FANOUT as FANOUT
from ._node_keys import REDIS as REDIS
from ._node_keys import STATISTICS as STATISTICS
from ._openapi import document_errors as document_errors
from ._openapi import public as public
from ._protocol import ErrorBody as ErrorBody
from ._protocol import ErrorReply as ErrorReply
from ._protocol import Message as Message
from ._protocol import Request as Request
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
from ._statistics import StatisticsError as StatisticsError
from ._statistics import StatisticsRegistry as StatisticsRegistry
from ._statistics import StatisticsSource as StatisticsSource
from ._supervisor import ChildSpec as ChildSpec
from ._supervisor import RestartType as RestartType
from ._supervisor import ServiceSpec as ServiceSpec
from ._supervisor import ServiceStatistics as ServiceStatistics
from ._supervisor import Strategy as Strategy
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorSpec as SupervisorSpec
from ._supervisor import SupervisorStatistics as SupervisorStatistics
from ._websocket import SessionClosed as SessionClosed
from ._websocket import WebSocketSession as WebSocketSession
from ._websocket import WebSocketSessionStatistics as WebSocketSessionStatistics
from ._websocket import authenticate_websocket as authenticate_websocket
from ._websocket import run_session as run_session
from ._ws_connection import CloseCode as CloseCode
from ._ws_connection import WebSocketStatistics as WebSocketStatistics
from ._ws_connection import websocket_statistics as websocket_statistics
from ._ws_frames import AuthFrame as AuthFrame
from ._ws_frames import ErrorFrame as ErrorFrame
from ._ws_frames import FrameDecoder as FrameDecoder
from ._ws_frames import FrameError as FrameError
from ._ws_frames import encode_frame as encode_frame
from ._ws_origin import origin_allowed as origin_allowed

__all__ = [
    "FANOUT",
    "REDIS",
    "STATISTICS",
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
    "AuthFrame",
    "Channel",
    "ChannelSpec",
    "ChannelStatistics",
    "ChannelSubscription",
    "ChildSpec",
    "Clock",
    "CloseCode",
    "ConfigError",
    "Configuration",
    "ErrorBody",
    "ErrorFrame",
    "ErrorReply",
    "Extension",
    "Extensions",
    "Fanout",
    "FanoutStatistics",
    "FrameDecoder",
    "FrameError",
    "Gap",
    "HttpStatistics",
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
    "Request",
    "RestartIntensityExceeded",
    "RestartType",
    "Secret",
    "ServiceSpec",
    "ServiceStatistics",
    "SessionClosed",
    "Settings",
    "SettingsSection",
    "StatisticsError",
    "StatisticsRegistry",
    "StatisticsSource",
    "Strategy",
    "Subscription",
    "Supervisor",
    "SupervisorSpec",
    "SupervisorStatistics",
    "SystemClock",
    "TokenSource",
    "TokenVerifier",
    "WebSocketSession",
    "WebSocketSessionStatistics",
    "WebSocketStatistics",
    "assemble_node",
    "authenticate_websocket",
    "configure_logging",
    "create_app",
    "current_principal",
    "decode_body",
    "document_errors",
    "encode_frame",
    "error_response",
    "json_response",
    "load_configuration",
    "load_settings",
    "message_tag",
    "node_context",
    "origin_allowed",
    "public",
    "redis_key",
    "require_auth",
    "run_node",
    "run_session",
    "websocket_statistics",
]
