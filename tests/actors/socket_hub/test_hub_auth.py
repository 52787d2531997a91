"""The hub's authentication over real Hypercorn and TCP: every way in, every way refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from actors.socket_hub import HubSettings
from runtime import Secret, Settings
from runtime.testing import ManualClock

from .hub_support import SECRET, HubNode, hub_node

pytestmark = pytest.mark.e2e

OTHER_SECRET = "another-secret-that-is-also-32-bytes-long"
ALLOWED_ORIGIN = "https://app.example"
# Long idle timeout: these tests move the clock by minutes.
CALM = HubSettings(idle_timeout_seconds=10_000, auth_timeout_seconds=5)


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(node: HubNode, case: str) -> str:
    """A token the node must refuse, of the kind ``case`` names."""
    now = int(node.clock.time())
    claims: dict[str, Any] = {"sub": "mallory", "iat": now, "exp": now + 600}
    if case == "expired":
        claims |= {"iat": now - 7200, "exp": now - 3600}
    elif case == "wrong_key":
        return jwt.encode(claims, OTHER_SECRET, algorithm="HS256")
    elif case == "forged_signature":  # a valid token's signature on an edited payload
        header, _, signature = node.token("mallory").split(".")
        return ".".join([header, _b64(claims | {"roles": ["admin"]}), signature])
    elif case == "alg_none":
        return ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(claims), ""])
    elif case == "missing_exp":
        del claims["exp"]
    elif case == "missing_sub":
        del claims["sub"]
    elif case == "too_long_lifetime":
        claims["exp"] = now + 10 * int(node.verifier.max_lifetime_seconds)
    elif case == "malformed":
        return "not-a-jwt"
    return jwt.encode(claims, SECRET, algorithm="HS256")


BAD_TOKENS = [
    ("expired", "token_expired"),
    ("wrong_key", "invalid_token"),
    ("forged_signature", "invalid_token"),
    ("alg_none", "invalid_token"),
    ("missing_exp", "missing_claim"),
    ("missing_sub", "missing_claim"),
    ("too_long_lifetime", "lifetime_too_long"),
    ("malformed", "malformed_token"),
]


@pytest.mark.parametrize(("case", "code"), BAD_TOKENS)
async def test_a_bad_header_token_refuses_the_upgrade_401_with_its_json_error(
    case: str, code: str
) -> None:
    async with hub_node(clock=ManualClock()) as node:
        headers = {"Authorization": f"Bearer {forged(node, case)}"}
        status, body = await node.refused(headers=headers)
        assert (status, body["error"]["code"]) == (401, code)
        assert body["error"]["message"]
        assert node.connections() == []
        assert (await node.statistics()).connects == 0


@pytest.mark.parametrize(
    ("case", "code"), [("wrong_key", "invalid_token"), ("alg_none", "invalid_token")]
)
async def test_a_bad_query_token_refuses_the_upgrade_401(case: str, code: str) -> None:
    async with hub_node(clock=ManualClock()) as node:
        status, body = await node.refused(query=f"?token={forged(node, case)}")
        assert (status, body["error"]["code"]) == (401, code)


@pytest.mark.parametrize(("case", "code"), BAD_TOKENS)
async def test_a_bad_first_frame_token_gets_an_error_frame_then_close_4001(
    case: str, code: str
) -> None:
    async with hub_node(clock=ManualClock()) as node:
        async with node.anonymous() as client:
            error = await client.error({"type": "auth", "token": forged(node, case)})
            assert error["code"] == code
            assert await client.closed() == (4001, code)
        assert (await node.statistics()).connects == 0


async def test_a_header_token_is_welcomed_into_the_personal_room() -> None:
    async with hub_node(clock=ManualClock()) as node, node.client("alice") as alice:
        welcome = alice.welcome
        assert welcome is not None
        assert welcome["user_id"] == "alice"
        assert welcome["user_name"] == "Alice"
        assert welcome["room"] == "user:alice"
        assert welcome["offset"] == 0 and welcome["epoch"]
        assert welcome["expires_at"] == pytest.approx(node.clock.time() + 3600, abs=2)
        await alice.quiet()


async def test_a_query_token_is_accepted() -> None:
    async with hub_node(clock=ManualClock()) as node:
        query = f"?token={node.token('bob')}"
        async with node.anonymous(query) as client:
            welcome = await client.expect("welcome")
            assert welcome["user_id"] == "bob"
        assert (await node.statistics()).connects == 1


async def test_a_first_frame_token_is_accepted() -> None:
    async with hub_node(clock=ManualClock()) as node, node.anonymous() as client:
        await client.send({"type": "auth", "token": node.token("carol")})
        welcome = await client.expect("welcome")
        assert (welcome["user_id"], welcome["room"]) == ("carol", "user:carol")
        joined, _ = await client.join("public:lobby")
        assert joined["room"] == "public:lobby"


async def test_no_auth_frame_within_the_timeout_closes_4001_missing_token() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node:
        async with node.anonymous() as client:
            node.advance(5)
            error = await client.expect("error")
            assert error["code"] == "missing_token"
            assert await client.closed() == (4001, "missing_token")
        assert node.connections() == []


async def test_no_auth_frame_closes_4001_on_a_real_clock_with_a_short_timeout() -> None:
    async with hub_node(HubSettings(auth_timeout_seconds=0.2)) as node, node.anonymous() as client:
        assert await client.closed() == (4001, "missing_token")


async def test_a_token_of_a_subject_that_cannot_name_a_room_is_refused() -> None:
    async with hub_node(clock=ManualClock()) as node:
        token = node.verifier.issue("has space", ttl_seconds=600)
        status, body = await node.refused(headers={"Authorization": f"Bearer {token}"})
        assert (status, body["error"]["code"]) == (401, "invalid_token")


# -- live tokens: refresh, warning, expiry ----------------------------------------------------


async def test_a_refresh_for_the_same_subject_is_acked_and_outlives_the_old_token() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node:
        token = node.token("alice", ttl_seconds=120)
        async with node.client("alice", token=token) as alice:
            node.advance(61)  # inside the 60 s warning window
            warning = await alice.expect("token_expiring")
            assert warning["expires_at"] == pytest.approx(node.clock.time() + 59, abs=2)
            fresh = node.token("alice", ttl_seconds=3600)
            ack = await alice.request({"type": "auth", "token": fresh})
            assert ack["type"] == "ack"
            node.advance(120)  # well past the first token's expiry
            await alice.quiet()
            assert alice.ws.close_code is None
            stats = await node.statistics()
            assert (stats.refreshes, stats.expiry_warnings) == (1, 1)


async def test_a_refresh_for_another_subject_is_refused_and_the_connection_goes_on() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node, node.client("alice") as alice:
        answer = await alice.request({"type": "auth", "token": node.token("bob")})
        assert (answer["type"], answer["code"]) == ("error", "subject_mismatch")
        await alice.quiet()
        _joined, presence = await alice.join("public:lobby")
        assert presence["members"] == [{"user_id": "alice", "user_name": "Alice", "connections": 1}]
        assert (await node.statistics()).refreshes == 0


async def test_a_refresh_with_a_bad_token_is_an_error_frame() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node, node.client("alice") as alice:
        answer = await alice.request({"type": "auth", "token": forged(node, "wrong_key")})
        assert (answer["type"], answer["code"]) == ("error", "invalid_token")
        await alice.quiet()


async def test_an_unrefreshed_token_is_warned_then_closed_4001_token_expired() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node:
        async with node.client("alice", token=node.token("alice", ttl_seconds=90)) as alice:
            node.advance(31)
            assert (await alice.expect("token_expiring"))["expires_at"] == pytest.approx(
                node.clock.time() + 59, abs=2
            )
            node.advance(60)
            assert await alice.closed() == (4001, "token_expired")
        await node.wait_for(lambda: node.connections() == [])


# -- Origin ---------------------------------------------------------------------------------


async def test_an_origin_outside_the_allow_list_is_refused_403_before_the_token() -> None:
    settings = Settings(jwt_secret=Secret(SECRET), cors_origins=(ALLOWED_ORIGIN,))
    async with hub_node(node=settings, clock=ManualClock()) as node:
        headers = node.bearer("alice") | {"Origin": "https://evil.example"}
        status, body = await node.refused(headers=headers)
        assert (status, body["error"]["code"]) == (403, "origin_not_allowed")
        assert node.connections() == []
        headers = node.bearer("alice") | {"Origin": ALLOWED_ORIGIN}
        async with node.client("alice", token=None, additional_headers=headers) as alice:
            assert alice.welcome is not None and alice.welcome["user_id"] == "alice"


async def test_the_singular_role_claim_and_the_name_are_read() -> None:
    async with hub_node(clock=ManualClock()) as node:
        now = int(node.clock.time())
        claims = {"sub": "root", "iat": now, "exp": now + 600, "role": "admin", "name": "Root"}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        async with node.client("root", token=token) as root:
            assert root.welcome is not None and root.welcome["user_name"] == "Root"
            joined, _ = await root.join("admin:ops")
            assert joined["room"] == "admin:ops"


async def test_a_configured_audience_and_issuer_are_required() -> None:
    settings = Settings(jwt_secret=Secret(SECRET), jwt_audience="hub", jwt_issuer="auth.example")
    async with hub_node(node=settings, clock=ManualClock()) as node:
        now = int(node.clock.time())
        claims = {"sub": "alice", "iat": now, "exp": now + 600}
        for extra, code in (
            ({}, "missing_claim"),
            ({"aud": "other", "iss": "auth.example"}, "invalid_audience"),
            ({"aud": "hub", "iss": "elsewhere"}, "invalid_issuer"),
        ):
            token = jwt.encode(claims | extra, SECRET, algorithm="HS256")
            status, body = await node.refused(headers={"Authorization": f"Bearer {token}"})
            assert (status, body["error"]["code"]) == (401, code), extra
        async with node.client("alice") as alice:  # issue() sets both
            assert alice.welcome is not None and alice.welcome["user_id"] == "alice"


async def test_a_refreshed_token_is_warned_again_before_it_expires_in_turn() -> None:
    async with hub_node(CALM, clock=ManualClock()) as node:
        async with node.client("alice", token=node.token("alice", ttl_seconds=90)) as alice:
            node.advance(31)
            await alice.expect("token_expiring")
            ack = await alice.request(
                {"type": "auth", "token": node.token("alice", ttl_seconds=90)}
            )
            assert ack["type"] == "ack"
            node.advance(31)  # past the first token's expiry, inside the new one's window
            second = await alice.expect("token_expiring")
            assert second["expires_at"] == pytest.approx(node.clock.time() + 59, abs=2)
            node.advance(60)
            assert await alice.closed() == (4001, "token_expired")
        assert (await node.statistics()).expiry_warnings == 2
