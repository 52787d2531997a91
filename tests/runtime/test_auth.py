"""Tests for JWT authentication: every rejection has an exact code, status and message."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from runtime._auth import (
    MAX_TOKEN_CHARS,
    AuthError,
    Principal,
    TokenVerifier,
    require_role,
)
from runtime._clock import ManualClock
from runtime._errors import ActorSystemError, ConfigError

SECRET = "s3cret-" + "k" * 25  # exactly 32 bytes: the recommended minimum for HS256
LONG_SECRET = "L" * 64  # long enough for HS512 too
NOW = 1_700_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_start=NOW)


@pytest.fixture
def verifier(clock: ManualClock) -> TokenVerifier:
    return TokenVerifier(SECRET, clock=clock)


def sign(claims: dict[str, Any], *, key: str = SECRET, alg: str = "HS256", **headers: Any) -> str:
    """Sign arbitrary claims, bypassing ``issue()`` so tests can craft bad tokens."""
    return jwt.encode(claims, key, algorithm=alg, headers=headers or None)


def claims(**extra: Any) -> dict[str, Any]:
    """A valid claim set, overridable per test (``None`` removes a claim)."""
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 60, "iat": NOW}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def sign_raw(header: object, payload: object, *, key: str = SECRET) -> str:
    """HS256-sign any JSON header and payload (pyjwt's encode refuses some of them)."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    digest = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def rejects(verifier: TokenVerifier, token: str) -> AuthError:
    """Verify ``token``, expect an AuthError, and check it leaks neither token nor secret."""
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert_no_leak(info.value, token)
    return info.value


def assert_no_leak(error: AuthError, token: str) -> None:
    for text in (str(error), repr(error), error.message):
        assert SECRET not in text
        assert LONG_SECRET not in text
        assert not token or token not in text


def expect(error: AuthError, code: str, message: str, status: int = 401) -> None:
    assert (error.code, error.message, error.status) == (code, message, status)
    assert str(error) == f"{code}: {message}"


# --- valid tokens -------------------------------------------------------------------------


def test_issued_token_verifies_with_roles(verifier: TokenVerifier) -> None:
    token = verifier.issue("alice", roles=["admin", "ops", "admin"], name="Alice", team="blue")
    principal = verifier.verify(token)
    assert principal.subject == "alice"
    assert principal.roles == frozenset({"admin", "ops"})
    assert principal.name == "Alice"
    assert principal.expires_at == NOW + 3600
    assert principal.claims["team"] == "blue"
    assert principal.claims["roles"] == ["admin", "ops"]
    assert principal.has_role("ops") and not principal.has_role("root")
    with pytest.raises(TypeError):
        principal.claims["team"] = "red"  # type: ignore[index]


def test_single_role_claim_is_accepted(verifier: TokenVerifier) -> None:
    principal = verifier.verify(sign(claims(role="user")))
    assert principal.roles == frozenset({"user"})
    assert principal.name is None


def test_role_and_roles_claims_are_combined(verifier: TokenVerifier) -> None:
    principal = verifier.verify(sign(claims(role="user", roles=["admin"])))
    assert principal.roles == frozenset({"user", "admin"})


def test_no_role_claims_means_no_roles(verifier: TokenVerifier) -> None:
    assert verifier.verify(sign(claims())).roles == frozenset()
    assert verifier.verify(sign(claims(roles=[]))).roles == frozenset()


def test_custom_roles_claim(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, roles_claim="permissions")
    token = verifier.issue("bob", roles=["write"])
    assert jwt.decode(token, options={"verify_signature": False})["permissions"] == ["write"]
    assert verifier.verify(token).roles == frozenset({"write"})
    assert verifier.verify(sign(claims(role="read"))).roles == frozenset({"read"})


def test_secret_may_be_wrapped(clock: ManualClock) -> None:
    class Wrapped:
        def reveal(self) -> str:
            return SECRET

    wrapped = TokenVerifier(Wrapped(), clock=clock)
    assert wrapped.verify(TokenVerifier(SECRET, clock=clock).issue("a")).subject == "a"


def test_audience_and_issuer_when_configured(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, audience="switchyard", issuer="https://idp")
    token = verifier.issue("alice")
    decoded = jwt.decode(token, options={"verify_signature": False})
    assert (decoded["aud"], decoded["iss"]) == ("switchyard", "https://idp")
    assert verifier.verify(token).subject == "alice"
    assert verifier.verify(sign(claims(aud=["other", "switchyard"], iss="https://idp")))


def test_principal_repr_hides_claims_and_hash_matches_eq(verifier: TokenVerifier) -> None:
    token = verifier.issue("alice", roles=["b", "a"], email="alice@example.com")
    principal = verifier.verify(token)
    assert repr(principal) == (
        f"Principal(subject='alice', roles=['a', 'b'], name=None, expires_at={NOW + 3600.0!r})"
    )
    again = verifier.verify(token)
    assert principal == again and hash(principal) == hash(again)
    rebuilt = Principal(
        subject="alice",
        roles=frozenset({"a", "b"}),
        name=None,
        expires_at=NOW + 3600.0,
        claims=dict(principal.claims),
    )
    assert principal == rebuilt and hash(principal) == hash(rebuilt)


# --- time ---------------------------------------------------------------------------------


def test_expired_token(verifier: TokenVerifier, clock: ManualClock) -> None:
    token = verifier.issue("alice", ttl_seconds=60)
    clock.advance(59.5)
    assert verifier.verify(token).subject == "alice"
    clock.advance(0.5)  # now == exp: RFC 7519 says the token is no longer valid
    expect(
        rejects(verifier, token), "token_expired", "token expired 0s ago (leeway 0s); get a new one"
    )
    clock.advance(90)
    expect(
        rejects(verifier, token),
        "token_expired",
        "token expired 90s ago (leeway 0s); get a new one",
    )


def test_expiry_leeway_is_honoured(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, leeway_seconds=30)
    token = verifier.issue("alice", ttl_seconds=60)
    clock.advance(89)
    assert verifier.verify(token).subject == "alice"
    clock.advance(1.25)
    expect(
        rejects(verifier, token),
        "token_expired",
        "token expired 30.25s ago (leeway 30s); get a new one",
    )


def test_not_before_in_the_future(verifier: TokenVerifier, clock: ManualClock) -> None:
    token = sign(claims(nbf=NOW + 10))
    expect(
        rejects(verifier, token),
        "token_not_yet_valid",
        "token is not valid until 10s from now (leeway 0s); check the issuer's clock",
    )
    clock.advance(10)
    assert verifier.verify(token).subject == "alice"


def test_not_before_within_leeway(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, leeway_seconds=5)
    assert verifier.verify(sign(claims(nbf=NOW + 5))).subject == "alice"
    expect(
        rejects(verifier, sign(claims(nbf=NOW + 6))),
        "token_not_yet_valid",
        "token is not valid until 6s from now (leeway 5s); check the issuer's clock",
    )


def test_issued_in_the_future(verifier: TokenVerifier) -> None:
    expect(
        rejects(verifier, sign(claims(iat=NOW + 120))),
        "token_not_yet_valid",
        "token was issued 120s from now (leeway 0s); check the issuer's clock",
    )


@pytest.mark.parametrize(
    ("claim", "value", "got"),
    [
        ("exp", "soon", "a string"),
        ("exp", True, "a boolean"),
        ("exp", [1], "an array"),
        ("nbf", {"t": 1}, "an object"),
        ("iat", math.inf, "a non-finite number"),
    ],
)
def test_time_claims_must_be_numbers(
    verifier: TokenVerifier, claim: str, value: object, got: str
) -> None:
    expect(
        rejects(verifier, sign(claims(**{claim: value}))),
        "invalid_token",
        f"claim {claim!r} must be a number of seconds since the epoch, got {got}",
    )


# --- signature and algorithm --------------------------------------------------------------


def test_wrong_signature(verifier: TokenVerifier) -> None:
    token = sign(claims(), key="another-secret-of-32-bytes-or-so!")
    expect(rejects(verifier, token), "invalid_token", "token signature does not match the secret")


def test_tampered_payload(verifier: TokenVerifier) -> None:
    header, _, signature = verifier.issue("alice").split(".")
    forged = ".".join([header, b64(claims(sub="mallory", roles=["admin"])), signature])
    expect(rejects(verifier, forged), "invalid_token", "token signature does not match the secret")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_token_is_rejected(verifier: TokenVerifier, alg: str) -> None:
    token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims(roles=['admin']))}."
    expect(
        rejects(verifier, token), "invalid_token", "token is unsigned (alg 'none'); never accepted"
    )


def test_unsigned_token_from_pyjwt_is_rejected(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    expect(
        rejects(verifier, token), "invalid_token", "token is unsigned (alg 'none'); never accepted"
    )


def test_unpinned_algorithm_is_rejected(clock: ManualClock) -> None:
    verifier = TokenVerifier(LONG_SECRET, clock=clock)  # pins HS256 only
    token = sign(claims(), key=LONG_SECRET, alg="HS512")
    expect(
        rejects(verifier, token),
        "invalid_token",
        "token names algorithm 'HS512'; only HS256 is accepted",
    )
    assert TokenVerifier(LONG_SECRET, clock=clock, algorithms=["HS512"]).verify(token)


def test_missing_algorithm_header(verifier: TokenVerifier) -> None:
    token = f"{b64({'typ': 'JWT'})}.{b64(claims())}.c2ln"
    expect(
        rejects(verifier, token),
        "invalid_token",
        "token names no algorithm; only HS256 is accepted",
    )


def test_other_pyjwt_rejections_are_invalid_token(verifier: TokenVerifier) -> None:
    token = sign_raw({"alg": "HS256", "kid": 7}, claims())
    expect(rejects(verifier, token), "invalid_token", "token was rejected (InvalidTokenError)")


# --- required claims, audience, issuer ----------------------------------------------------


@pytest.mark.parametrize("claim", ["sub", "exp"])
def test_required_claim_missing(verifier: TokenVerifier, claim: str) -> None:
    expect(
        rejects(verifier, sign(claims(**{claim: None}))),
        "missing_claim",
        f"token has no {claim!r} claim; required",
    )


@pytest.mark.parametrize(
    ("sub", "got"),
    [("", "0 characters"), ("x" * 257, "257 characters"), (42, "a number"), (["a"], "an array")],
)
def test_subject_must_be_a_short_non_empty_string(
    verifier: TokenVerifier, sub: object, got: str
) -> None:
    expect(
        rejects(verifier, sign(claims(sub=sub))),
        "invalid_token",
        f"claim 'sub' must be a string of 1 to 256 characters, got {got}",
    )
    assert verifier.verify(sign(claims(sub="x" * 256))).subject == "x" * 256


def test_wrong_audience(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, audience="switchyard")
    expect(
        rejects(verifier, sign(claims(aud="billing"))),
        "invalid_audience",
        "token audience is not 'switchyard'",
    )
    expect(
        rejects(verifier, sign(claims())),
        "missing_claim",
        "token has no 'aud' claim; this verifier requires audience 'switchyard'",
    )


def test_audience_present_but_not_configured(verifier: TokenVerifier) -> None:
    expect(
        rejects(verifier, sign(claims(aud="billing"))),
        "invalid_audience",
        "token names an audience ('aud'); this verifier expects none",
    )


def test_wrong_issuer(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, issuer="https://idp")
    expect(
        rejects(verifier, sign(claims(iss="https://evil"))),
        "invalid_issuer",
        "token issuer is not 'https://idp'",
    )
    expect(
        rejects(verifier, sign(claims())),
        "missing_claim",
        "token has no 'iss' claim; this verifier requires issuer 'https://idp'",
    )


ROLES = "must be a non-empty string or an array of them, got"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"roles": "admin,ops"}, None),  # a string in `roles` is read as one role
        ({"roles": [1]}, f"claim 'roles' {ROLES} an array with a non-string or empty item"),
        ({"roles": ["ok", ""]}, f"claim 'roles' {ROLES} an array with a non-string or empty item"),
        ({"roles": {"a": 1}}, f"claim 'roles' {ROLES} an object"),
        ({"role": ""}, f"claim 'role' {ROLES} an empty string"),
        ({"role": 3}, f"claim 'role' {ROLES} a number"),
        ({"name": 3}, "claim 'name' must be a string, got a number"),
    ],
)
def test_claim_types(verifier: TokenVerifier, extra: dict[str, Any], message: str | None) -> None:
    token = sign(claims(**extra))
    if message is None:
        assert verifier.verify(token).roles == frozenset({"admin,ops"})
    else:
        expect(rejects(verifier, token), "invalid_token", message)


# --- malformed tokens and headers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "token is not three base64url segments joined by '.'"),
        ("abc", "token is not three base64url segments joined by '.'"),
        ("a.b", "token is not three base64url segments joined by '.'"),
        ("a.b.c.d", "token is not three base64url segments joined by '.'"),
        ("a b.c.d", "token is not three base64url segments joined by '.'"),
        ("!!.??.**", "token segments are not base64url-encoded JSON"),
        ("e30", "token is not three base64url segments joined by '.'"),
        (f"{b64({'alg': 'HS256'})}.e30", "token is not three base64url segments joined by '.'"),
        ("WzFd.e30.c2ln", "token segments are not base64url-encoded JSON"),
        (sign_raw({"alg": "HS256"}, [1]), "token segments are not base64url-encoded JSON"),
        (sign_raw({"alg": "HS256"}, "x"), "token segments are not base64url-encoded JSON"),
        ("é.é.é", "token segments are not base64url-encoded JSON"),
    ],
)
def test_malformed_tokens(verifier: TokenVerifier, token: str, message: str) -> None:
    expect(rejects(verifier, token), "malformed_token", message)


def test_oversized_token(verifier: TokenVerifier) -> None:
    token = verifier.issue("alice", padding="p" * MAX_TOKEN_CHARS)
    expect(
        rejects(verifier, token),
        "malformed_token",
        f"token is {len(token)} characters; the limit is 8192",
    )


def test_authorization_header_accepts_any_case_of_bearer(verifier: TokenVerifier) -> None:
    token = verifier.issue("alice")
    for value in (f"Bearer {token}", f"bearer {token}", f"BEARER   {token}  ", f" Bearer {token}"):
        assert verifier.verify_authorization_header(value).subject == "alice"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_authorization_header(verifier: TokenVerifier, value: str | None) -> None:
    with pytest.raises(AuthError) as info:
        verifier.verify_authorization_header(value)
    expect(info.value, "missing_token", "no Authorization header; send 'Bearer <token>'")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Basic {token}", "Authorization header must use the Bearer scheme: 'Bearer <token>'"),
        ("{token}", "Authorization header must use the Bearer scheme: 'Bearer <token>'"),
        ("Bearer:{token}", "Authorization header must use the Bearer scheme: 'Bearer <token>'"),
        ("Bearer", "Authorization header has no token after 'Bearer'"),
        ("Bearer    ", "Authorization header has no token after 'Bearer'"),
        ("Bearer {token} extra", "token is not three base64url segments joined by '.'"),
    ],
)
def test_malformed_authorization_header(
    verifier: TokenVerifier, template: str, message: str
) -> None:
    token = verifier.issue("alice")
    with pytest.raises(AuthError) as info:
        verifier.verify_authorization_header(template.format(token=token))
    expect(info.value, "malformed_token", message)
    assert_no_leak(info.value, token)


# --- roles --------------------------------------------------------------------------------


def test_require_role(verifier: TokenVerifier) -> None:
    principal = verifier.verify(verifier.issue("alice", roles=["user", "ops"]))
    assert require_role(principal, "ops") is principal
    assert verifier.require_role(principal, "user") is principal
    with pytest.raises(AuthError) as info:
        verifier.require_role(principal, "admin")
    expect(
        info.value,
        "insufficient_role",
        "role 'admin' is required; subject 'alice' has roles ['ops', 'user']",
        status=403,
    )


def test_require_role_without_roles(verifier: TokenVerifier) -> None:
    principal = verifier.verify(verifier.issue("bob"))
    with pytest.raises(AuthError) as info:
        require_role(principal, "admin")
    expect(
        info.value, "insufficient_role", "role 'admin' is required; subject 'bob' has no roles", 403
    )


def test_auth_error_shape() -> None:
    error = AuthError("token_expired", "gone")
    assert isinstance(error, ActorSystemError)
    with pytest.raises(ValueError, match="unknown auth error code 'nope'"):
        AuthError("nope", "x")  # type: ignore[arg-type]


# --- secrets ------------------------------------------------------------------------------


def test_repr_hides_the_secret(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, audience="switchyard", issuer="https://idp")
    assert repr(verifier) == (
        "TokenVerifier(algorithms=['HS256'], audience='switchyard', issuer='https://idp')"
    )
    assert SECRET not in repr(verifier) and SECRET not in str(vars(verifier).get("algorithms"))


def test_strong_secret_emits_no_warning(verifier: TokenVerifier) -> None:
    # filterwarnings = error: any InsecureKeyLengthWarning here fails the test.
    assert verifier.min_secret_bytes == 32
    assert verifier.verify(verifier.issue("alice")).subject == "alice"


@pytest.mark.parametrize(
    ("secret", "algorithms", "message"),
    [
        ("k" * 5, ["HS256"], "it is 5 bytes; HS256 needs at least 32 (RFC 7518 §3.2)"),
        ("k" * 31, ["HS256"], "it is 31 bytes; HS256 needs at least 32 (RFC 7518 §3.2)"),
        ("k" * 47, ["HS384"], "it is 47 bytes; HS384 needs at least 48 (RFC 7518 §3.2)"),
        (SECRET, ["HS512", "HS256"], "it is 32 bytes; HS512 needs at least 64 (RFC 7518 §3.2)"),
        ("é" * 15 + "k", ["HS256"], "it is 31 bytes; HS256 needs at least 32"),  # bytes, not chars
    ],
)
def test_short_secret_is_refused(
    clock: ManualClock, secret: str, algorithms: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        TokenVerifier(secret, clock=clock, algorithms=algorithms)
    assert str(info.value).startswith(f"secret has value '<hidden>'; {message}")
    assert secret not in str(info.value)


def test_hs512_takes_a_64_byte_secret(clock: ManualClock) -> None:
    strong = TokenVerifier(LONG_SECRET, clock=clock, algorithms=["HS512", "HS256"])
    assert strong.min_secret_bytes == 64
    assert jwt.get_unverified_header(strong.issue("a"))["alg"] == "HS512"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": ""}, "secret has value '<hidden>'; expected a non-empty string"),
        ({"algorithms": ["none"]}, "algorithms has value 'none'; expected a non-empty list of "),
        ({"algorithms": []}, "algorithms has value (); expected a non-empty list of "),
        ({"algorithms": ["HS256", "XS1"]}, "algorithms has value 'XS1'; expected a non-empty "),
        ({"leeway_seconds": -1}, "leeway_seconds has value -1; expected a finite number >= 0"),
        ({"leeway_seconds": math.nan}, "leeway_seconds has value nan; expected a finite number"),
        (
            {"secret": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"},
            "secret has value '<hidden>'; it is not a key for HS256",
        ),
    ],
)
def test_configuration_errors(clock: ManualClock, kwargs: dict[str, Any], message: str) -> None:
    kwargs = {"secret": SECRET, **kwargs}
    with pytest.raises(ConfigError) as info:
        TokenVerifier(kwargs.pop("secret"), clock=clock, **kwargs)
    assert str(info.value).startswith(message)
    assert "BEGIN" not in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject": ""}, "subject '' is not a string of 1 to 256 characters"),
        ({"ttl_seconds": 0}, "ttl_seconds is 0; expected a finite number > 0"),
        ({"ttl_seconds": math.inf}, "ttl_seconds is inf; expected a finite number > 0"),
        ({"roles": "admin"}, "roles is the string 'admin'; pass a sequence such as ['admin']"),
        ({"exp": 1}, "extra claims ['exp'] clash with claims that issue() sets itself"),
        ({"role": "x"}, None),
        ({"roles": [], "name": None, "aud": "x"}, "extra claims ['aud'] clash with claims that"),
    ],
)
def test_issue_validates_arguments(
    verifier: TokenVerifier, kwargs: dict[str, Any], message: str | None
) -> None:
    if message is None:
        assert verifier.verify(verifier.issue("alice", **kwargs)).roles == frozenset({"x"})
        return
    with pytest.raises(ValueError) as info:
        verifier.issue(kwargs.pop("subject", "alice"), **kwargs)
    assert str(info.value).startswith(message)


def test_no_error_message_contains_the_secret_or_the_token(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, audience="api", issuer="idp")
    bad_tokens = [
        sign(claims(aud="api", iss="idp"), key=LONG_SECRET),
        sign(claims(aud="web", iss="idp")),
        sign(claims(aud="api", iss="other")),
        sign(claims(aud="api", iss="idp", sub=None)),
        sign(claims(aud="api", iss="idp", exp=NOW - 1)),
        sign(claims(aud="api", iss="idp", roles=[SECRET, 1])),
        sign(claims(aud="api", iss="idp"), key=LONG_SECRET, alg="HS384"),
        SECRET,
        f"{SECRET}.{SECRET}.{SECRET}",
    ]
    for token in bad_tokens:
        rejects(verifier, token)
        for header in (token, f"Bearer {token}", f"Token {token}"):
            with pytest.raises(AuthError) as info:
                verifier.verify_authorization_header(header)
            assert_no_leak(info.value, token)


# --- token lifetime: iat required, exp - iat capped -----------------------------------------

TEN_YEARS = 10 * 365 * 86_400


@pytest.mark.parametrize(
    ("exp", "lifetime"),
    [
        (1e20, "1e+20"),
        (2**64, "1.84e+19"),
        (NOW + TEN_YEARS, "315360000"),
        (NOW + 86_401, "86401"),
    ],
)
def test_a_token_living_longer_than_the_cap_is_refused(
    verifier: TokenVerifier, exp: float, lifetime: str
) -> None:
    expect(
        rejects(verifier, sign(claims(exp=exp))),
        "lifetime_too_long",
        f"token lives {lifetime}s (exp - iat); this verifier accepts at most 86400s "
        "(leeway 0s); get a shorter-lived token",
    )


def test_a_token_without_iat_is_refused(verifier: TokenVerifier) -> None:
    for exp in (NOW + 60, NOW + TEN_YEARS, 1e20):
        expect(
            rejects(verifier, sign(claims(iat=None, exp=exp))),
            "missing_claim",
            "token has no 'iat' claim; required, to bound the token's lifetime (exp - iat)",
        )


def test_the_cap_itself_and_the_leeway_are_accepted(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, max_lifetime_seconds=600, leeway_seconds=5)
    assert verifier.verify(sign(claims(exp=NOW + 600))).expires_at == NOW + 600
    assert verifier.verify(sign(claims(exp=NOW + 605))).expires_at == NOW + 605
    expect(
        rejects(verifier, sign(claims(exp=NOW + 605.5))),
        "lifetime_too_long",
        "token lives 605.5s (exp - iat); this verifier accepts at most 600s (leeway 5s); "
        "get a shorter-lived token",
    )


def test_an_integer_time_beyond_a_float_is_invalid_not_a_crash(verifier: TokenVerifier) -> None:
    # Python's json reads 1 followed by 400 zeros as an int; float() of it overflows.
    token = sign_raw({"alg": "HS256", "typ": "JWT"}, claims(exp=10**400))
    expect(
        rejects(verifier, token),
        "invalid_token",
        "claim 'exp' must be a number of seconds since the epoch, got a non-finite number",
    )


def test_issue_refuses_a_ttl_beyond_the_cap(clock: ManualClock) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, max_lifetime_seconds=3600)
    for ttl in (3601, 1e12):
        with pytest.raises(ValueError) as info:
            verifier.issue("alice", ttl_seconds=ttl)
        assert str(info.value) == (
            f"ttl_seconds is {ttl:g}; this verifier accepts tokens that live at most 3600s "
            "(max_lifetime_seconds, SWITCHYARD_JWT_MAX_LIFETIME_SECONDS)"
        )


def test_a_token_issued_for_the_whole_cap_verifies_at_a_fractional_time() -> None:
    clock = ManualClock(wall_start=NOW + 0.75)  # iat rounds down, exp would round up
    verifier = TokenVerifier(SECRET, clock=clock, max_lifetime_seconds=3600)
    token = verifier.issue("alice", ttl_seconds=3600)
    claims_ = jwt.decode(token, options={"verify_signature": False})
    assert (claims_["iat"], claims_["exp"]) == (NOW, NOW + 3600)
    assert verifier.verify(token).subject == "alice"


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan])
def test_max_lifetime_must_be_a_finite_positive_number(clock: ManualClock, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        TokenVerifier(SECRET, clock=clock, max_lifetime_seconds=value)
    assert str(info.value) == (
        f"max_lifetime_seconds has value {value!r}; expected a finite number > 0"
    )


def test_token_issue_with_a_ttl_beyond_the_cap_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.__main__ import main

    for name in ("SWITCHYARD_JWT_SECRET", "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    status = main(["token", "issue", "--sub", "root", "--role", "admin", "--jwt-secret", SECRET,
                   "--ttl-seconds", "1e12"])  # fmt: skip
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.rstrip().endswith(
        "token issue: ttl_seconds is 1e+12; this verifier accepts tokens that live at most "
        "86400s (max_lifetime_seconds, SWITCHYARD_JWT_MAX_LIFETIME_SECONDS)"
    )
    status = main(["--jwt-max-lifetime-seconds", "600", "token", "issue", "--sub", "root",
                   "--jwt-secret", SECRET, "--ttl-seconds", "601"])  # fmt: skip
    assert status == 2 and "at most 600s" in capsys.readouterr().err


# --- public keys: RS256 and ES256 with real keys -------------------------------------------

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def public_pem(private: PrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(private: PrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(("alg", "fixture"), [("RS256", "rsa_key"), ("ES256", "ec_key"),
                                               ("PS256", "rsa_key")])  # fmt: skip
def test_public_key_verifies_tokens_signed_by_the_private_key(
    clock: ManualClock, request: pytest.FixtureRequest, alg: str, fixture: str
) -> None:
    private = request.getfixturevalue(fixture)
    verifier = TokenVerifier(public_key=public_pem(private), algorithms=[alg], clock=clock)
    token = jwt.encode(claims(roles=["admin"]), private, algorithm=alg)
    principal = verifier.verify(token)
    assert (principal.subject, principal.roles) == ("alice", frozenset({"admin"}))
    other = (
        rsa.generate_private_key(65537, 2048)
        if alg != "ES256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    forged = jwt.encode(claims(roles=["admin"]), other, algorithm=alg)
    expect(rejects(verifier, forged), "invalid_token", "token signature does not match the secret")
    expect(
        rejects(verifier, jwt.encode(claims(exp=NOW + TEN_YEARS), private, algorithm=alg)),
        "lifetime_too_long",
        "token lives 315360000s (exp - iat); this verifier accepts at most 86400s (leeway 0s); "
        "get a shorter-lived token",
    )


def test_eddsa_with_a_real_key(clock: ManualClock) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    verifier = TokenVerifier(public_key=public_pem(private), algorithms=["EdDSA"], clock=clock)
    assert verifier.verify(jwt.encode(claims(), private, algorithm="EdDSA")).subject == "alice"


def test_hs_token_is_refused_when_only_rs_is_pinned(
    clock: ManualClock, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Algorithm confusion: an attacker HMAC-signs a token with the (public) PEM as the secret."""
    pem = public_pem(rsa_key)
    verifier = TokenVerifier(public_key=pem, algorithms=["RS256"], clock=clock)
    for key in (pem, pem.encode().decode().strip(), SECRET):
        token = sign_raw({"alg": "HS256", "typ": "JWT"}, claims(roles=["admin"]), key=key)
        expect(
            rejects(verifier, token),
            "invalid_token",
            "token names algorithm 'HS256'; only RS256 is accepted",
        )
    es = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    expect(rejects(verifier, es), "invalid_token", "token names algorithm 'ES256'; only RS256 "
           "is accepted")  # fmt: skip


def test_a_pem_on_one_line_with_escaped_newlines_is_accepted(
    clock: ManualClock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    one_line = public_pem(ec_key).replace("\n", "\\n")
    verifier = TokenVerifier(public_key=one_line, algorithms=["ES256"], clock=clock)
    assert verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256")).subject == "alice"


def test_public_key_problems_are_refused(
    clock: ManualClock, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"public_key": private_pem(rsa_key), "algorithms": ["RS256"]},
         "public_key has value '<hidden>'; it is a private key; give the node only the public key"),
        ({"public_key": public_pem(small), "algorithms": ["RS256"]},
         "public_key has value '<hidden>'; it is a 1024-bit RSA key; RS256 needs at least 2048 "
         "bits"),
        ({"public_key": public_pem(p384), "algorithms": ["ES256"]},
         "public_key has value '<hidden>'; it is not a PEM public key for ES256"),
        ({"public_key": public_pem(rsa_key), "algorithms": ["ES256"]},
         "public_key has value '<hidden>'; it is not a PEM public key for ES256"),
        ({"public_key": "not a key", "algorithms": ["RS256"]},
         "public_key has value '<hidden>'; it is not a PEM public key for RS256"),
        ({"algorithms": ["RS256"]}, "public_key has value '<hidden>'; expected a non-empty string"),
        ({"secret": public_pem(rsa_key), "algorithms": ["RS256"]},
         "secret has value '<hidden>'; RS256 verifies with public_key; leave secret unset"),
        ({"secret": SECRET, "public_key": public_pem(ec_key)},
         "public_key has value '<hidden>'; HS256 verifies with secret; leave public_key unset"),
        ({"public_key": public_pem(rsa_key), "algorithms": ["HS256", "RS256"]},
         "algorithms has value ('HS256', 'RS256'); do not mix HS* with public-key algorithms"),
    ]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            TokenVerifier(clock=clock, **kwargs)
        assert str(info.value) == message
        assert "BEGIN" not in str(info.value)


def test_issue_needs_an_hmac_algorithm(
    clock: ManualClock, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = TokenVerifier(public_key=public_pem(ec_key), algorithms=["ES256"], clock=clock)
    with pytest.raises(ValueError, match=r"issue\(\) needs an HS\* algorithm"):
        verifier.issue("alice")


def test_a_node_given_a_public_key_verifies_es256_tokens_over_http(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    """A real node (python -m runtime on Hypercorn) with SWITCHYARD_JWT_PUBLIC_KEY on one line."""
    import time

    import httpx

    from runtime.testing import NodeProcess

    env = {
        "SWITCHYARD_JWT_ALGORITHMS": "ES256",
        "SWITCHYARD_JWT_PUBLIC_KEY": public_pem(ec_key).replace("\n", "\\n"),
        "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS": "3600",
    }
    now = int(time.time())

    def token(lifetime: int, key: PrivateKey = ec_key) -> str:
        payload = {"sub": "ops", "roles": ["admin"], "iat": now, "exp": now + lifetime}
        return jwt.encode(payload, key, algorithm="ES256")

    with NodeProcess(env) as node, httpx.Client(base_url=node.url, timeout=10) as client:

        def status(bearer: str) -> tuple[int, str]:
            reply = client.get("/api/cache-stats", headers={"Authorization": f"Bearer {bearer}"})
            return reply.status_code, reply.json().get("error", {}).get("code", "")

        assert status(token(600))[0] == 200
        assert status(token(7200)) == (401, "lifetime_too_long")
        assert status(token(600, ec.generate_private_key(ec.SECP256R1())))[0] == 401
        hs = sign_raw({"alg": "HS256"}, {"sub": "ops", "roles": ["admin"], "iat": now,
                                        "exp": now + 60}, key=public_pem(ec_key))  # fmt: skip
        assert status(hs) == (401, "invalid_token")


# -- the cache of accepted tokens ----------------------------------------------------------


class SteppedClock(ManualClock):
    """A ManualClock whose wall time can also be stepped back (as NTP may do)."""

    def __init__(self) -> None:
        super().__init__(wall_start=NOW)
        self.step = 0.0

    def time(self) -> float:
        return super().time() + self.step


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token pyjwt decodes (a full verification), in order."""
    seen: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr("runtime._auth.jwt.decode", counting)
    return seen


def test_a_repeated_token_is_verified_once_and_gets_the_same_principal(
    verifier: TokenVerifier, decodes: list[str]
) -> None:
    token = sign(claims(roles=["admin"]))
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert verifier.verify_authorization_header(f"Bearer {token}") is first
    assert verifier.verify_authorization_header(f"bearer  {token} ") is first  # the slow parse
    assert decodes == [token]
    assert verifier.cached_tokens == 1


def test_a_remembered_token_expires_exactly_when_a_fresh_check_says(
    clock: ManualClock, decodes: list[str]
) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, leeway_seconds=5)
    token = sign(claims())  # exp NOW + 60
    verifier.verify(token)
    clock.advance(64.75)  # within exp + leeway: still served from memory
    assert verifier.verify(token).subject == "alice"
    assert decodes == [token]
    clock.advance(0.25)  # exp + leeway reached
    assert (rejects(verifier, token).code, verifier.cached_tokens) == ("token_expired", 0)
    error = rejects(verifier, token)  # never served again: checked in full each time
    assert (error.code, error.message) == (
        "token_expired",
        "token expired 5s ago (leeway 5s); get a new one",
    )
    assert decodes == [token] * 3


def test_a_remembered_token_is_refused_when_the_clock_steps_back_before_nbf(
    decodes: list[str],
) -> None:
    clock = SteppedClock()
    verifier = TokenVerifier(SECRET, clock=clock, leeway_seconds=2)
    token = sign(claims(nbf=NOW + 10, exp=NOW + 100))
    assert rejects(verifier, token).code == "token_not_yet_valid"
    assert verifier.cached_tokens == 0  # a failed token is never remembered
    clock.advance(8)  # nbf - leeway: valid now
    verifier.verify(token)
    assert verifier.cached_tokens == 1
    clock.step = -0.5  # the wall clock steps back below nbf - leeway
    error = rejects(verifier, token)
    assert (error.code, error.message) == (
        "token_not_yet_valid",
        "token is not valid until 2.5s from now (leeway 2s); check the issuer's clock",
    )
    assert verifier.cached_tokens == 0


def test_iat_in_the_future_bounds_a_remembered_token_too(decodes: list[str]) -> None:
    clock = SteppedClock()
    verifier = TokenVerifier(SECRET, clock=clock)
    token = sign(claims(iat=NOW, exp=NOW + 60))
    verifier.verify(token)
    clock.step = -1
    assert rejects(verifier, token).code == "token_not_yet_valid"


@pytest.mark.parametrize(
    "token",
    [
        sign(claims(), key="x" * 32),  # another key: bad signature
        sign(claims(exp=NOW - 1)),  # expired
        sign(claims(roles=[1])),  # a claim of the wrong type
        sign(claims(aud="elsewhere")),  # an audience this verifier does not expect
    ],
)
def test_a_token_that_fails_is_never_remembered(
    verifier: TokenVerifier, decodes: list[str], token: str
) -> None:
    first = rejects(verifier, token)
    second = rejects(verifier, token)
    assert (second.code, second.message) == (first.code, first.message)
    assert verifier.cached_tokens == 0
    assert decodes == [token, token]


def test_the_cache_is_bounded_and_forgets_the_oldest_first(
    clock: ManualClock, decodes: list[str]
) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, cache_entries=3)
    tokens = [sign(claims(sub=f"user-{i}")) for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert verifier.cached_tokens == 3
    decodes.clear()
    for token in tokens[2:]:
        verifier.verify(token)
    assert decodes == []  # the three newest are remembered
    verifier.verify(tokens[0])
    assert decodes == [tokens[0]]  # the oldest was forgotten and is checked in full
    assert verifier.cached_tokens == 3


def test_a_long_token_is_verified_every_time_and_never_held(
    verifier: TokenVerifier, decodes: list[str]
) -> None:
    token = sign(claims(pad="p" * 3000))
    assert len(token) > 2048
    verifier.verify(token)
    verifier.verify(token)
    assert (verifier.cached_tokens, decodes) == (0, [token, token])


def test_cache_entries_zero_verifies_every_token_in_full(
    clock: ManualClock, decodes: list[str]
) -> None:
    verifier = TokenVerifier(SECRET, clock=clock, cache_entries=0)
    token = sign(claims())
    verifier.verify(token)
    verifier.verify(token)
    assert (verifier.cached_tokens, decodes) == (0, [token, token])


@pytest.mark.parametrize("entries", [-1, True, 1.5, "8"])
def test_cache_entries_must_be_a_count(clock: ManualClock, entries: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TokenVerifier(SECRET, clock=clock, cache_entries=entries)
    assert str(info.value) == (
        f"cache_entries has value {entries!r}; expected an integer >= 0"
    )


def test_each_verifier_remembers_only_its_own_tokens(clock: ManualClock) -> None:
    mine = TokenVerifier(SECRET, clock=clock)
    other = TokenVerifier("o" * 32, clock=clock)
    token = sign(claims())
    mine.verify(token)
    assert rejects(other, token).code == "invalid_token"


@pytest.mark.parametrize(
    "attribute",
    ["algorithms", "audience", "issuer", "leeway_seconds", "max_lifetime_seconds", "roles_claim"],
)
def test_the_configuration_cannot_change_under_remembered_tokens(
    verifier: TokenVerifier, attribute: str
) -> None:
    with pytest.raises(AttributeError):
        setattr(verifier, attribute, getattr(verifier, attribute))
