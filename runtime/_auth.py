"""JWT bearer authentication shared by every HTTP route and the WebSocket hub.

:class:`TokenVerifier` turns an ``Authorization: Bearer <token>`` header into a
:class:`Principal`, or raises :class:`AuthError` with a stable ``code``, an HTTP
``status`` and a message that never contains the token or the secret.

Secure by default: algorithms are pinned (``"none"`` is refused both in the
configuration and in tokens, and HS* never mix with public-key algorithms),
HMAC secrets shorter than the hash are refused (RFC 8725 §3.5, RFC 7518 §3.2),
``sub``, ``exp`` and ``iat`` are required, a token living longer than
``max_lifetime_seconds`` (``exp - iat``) is refused, and audience and issuer
are checked whenever configured. ``exp``, ``nbf`` and ``iat`` are
checked here against the injected :class:`~runtime._clock.Clock` (pyjwt would
read the system clock), so tests move time with ``ManualClock``.

A verifier remembers the tokens it accepted (see :class:`TokenVerifier`,
``cache_entries``): a repeated token costs a dict lookup and the time checks
instead of a signature check and a JSON decode. Only a token that passed every
check is remembered, never past its ``exp`` (plus leeway), and each hit
repeats the ``exp``, ``nbf`` and ``iat`` comparisons against the clock.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, get_args

import jwt
import msgspec
from jwt.algorithms import Algorithm, HMACAlgorithm, get_default_algorithms

from ._errors import ActorSystemError, ConfigError

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = [
    "AuthError",
    "AuthErrorCode",
    "Principal",
    "SupportsReveal",
    "TokenVerifier",
    "key_problem",
    "require_role",
]

# One C-level scan per token (a generator over its characters cost ~3% of a cached GET).
_WHITESPACE = re.compile(r"\s")

AuthErrorCode = Literal[
    "missing_token", "malformed_token", "invalid_token", "token_expired", "token_not_yet_valid",
    "invalid_audience", "invalid_issuer", "missing_claim", "insufficient_role",
    "lifetime_too_long",
]  # fmt: skip

MAX_TOKEN_CHARS = 8 * 1024
MAX_CACHED_TOKEN_CHARS = 2 * 1024  # a longer token is verified every time, never remembered
DEFAULT_CACHE_ENTRIES = 1024  # at most ~2 MiB of tokens (and their claims) held
MAX_SUBJECT_CHARS = 256
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key is at least the hash size
MIN_RSA_BITS = 2048  # RFC 7518 §3.3 and §3.5
DEFAULT_MAX_LIFETIME_SECONDS = 86_400.0
_ALGORITHMS: dict[str, Algorithm] = {
    name: alg for name, alg in get_default_algorithms().items() if name != "none"
}
_CODES = frozenset(get_args(AuthErrorCode))
_JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPES |= {list: "an array", dict: "an object", type(None): "null"}


class SupportsReveal(Protocol):
    """A wrapped secret (such as the settings' ``Secret``) that hides its value."""

    def reveal(self) -> str:
        """Return the plain secret."""
        ...


class AuthError(ActorSystemError):
    """A request is not authenticated (``status`` 401) or not authorised (403).

    ``code`` is one of :data:`AuthErrorCode`, ``message`` a sentence for
    people. Neither ever contains the token or the signing secret.
    """

    def __init__(self, code: AuthErrorCode, message: str) -> None:
        if code not in _CODES:
            raise ValueError(f"unknown auth error code {code!r}; expected one of {sorted(_CODES)}")
        self.code: AuthErrorCode = code
        self.message = message
        self.status: Literal[401, 403] = 403 if code == "insufficient_role" else 401
        super().__init__(f"{code}: {message}")


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The verified identity behind a request.

    ``claims`` is a read-only view of the whole verified payload (``sub``,
    ``exp`` and any custom claims). It takes part in equality but is left out
    of ``repr`` (claims may hold personal data that does not belong in logs)
    and of the hash, which covers the other fields.
    """

    subject: str
    roles: frozenset[str]
    name: str | None
    expires_at: float
    claims: Mapping[str, Any] = msgspec.field(default_factory=lambda: types.MappingProxyType({}))

    def has_role(self, role: str) -> bool:
        """Whether the token granted ``role``."""
        return role in self.roles

    def __hash__(self) -> int:
        return hash((self.subject, self.roles, self.name, self.expires_at))

    def __repr__(self) -> str:
        return (
            f"Principal(subject={self.subject!r}, roles={sorted(self.roles)!r}, "
            f"name={self.name!r}, expires_at={self.expires_at!r})"
        )


def require_role(principal: Principal, role: str) -> Principal:
    """Return ``principal`` if it has ``role``; else raise 403 ``insufficient_role``."""
    if principal.has_role(role):
        return principal
    granted = f"roles {sorted(principal.roles)!r}" if principal.roles else "no roles"
    raise AuthError(
        "insufficient_role",
        f"role {role!r} is required; subject {principal.subject!r} has {granted}",
    )


def _pem(key: str) -> str:
    """A PEM text given on one line with ``\\n`` escapes (as env files carry it), unfolded."""
    if "-----BEGIN" in key and "\n" not in key and "\\n" in key:
        return key.replace("\\n", "\n")
    return key


def _prepare(alg: str, key: str) -> object:
    """pyjwt's prepared key for ``alg``; raises ``ValueError`` with a problem text."""
    algorithm = _ALGORITHMS[alg]
    try:
        prepared = algorithm.prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError):
        if isinstance(algorithm, HMACAlgorithm):
            raise ValueError(f"it is not a key for {alg}") from None
        raise ValueError(f"it is not a PEM public key for {alg}") from None
    if isinstance(algorithm, HMACAlgorithm):
        return prepared
    # Verification needs only the public half; a private key here is a leak waiting to happen.
    if hasattr(prepared, "public_key") or hasattr(prepared, "private_bytes"):
        raise ValueError("it is a private key; give the node only the public key")
    bits = getattr(prepared, "key_size", None)
    if alg[:2] in ("RS", "PS") and isinstance(bits, int) and bits < MIN_RSA_BITS:
        raise ValueError(f"it is a {bits}-bit RSA key; {alg} needs at least {MIN_RSA_BITS} bits")
    return prepared


def hmac_family(algorithms: Sequence[str]) -> bool | None:
    """``True`` if every algorithm is HS*, ``False`` if none is, ``None`` if they mix."""
    hmac = {isinstance(_ALGORITHMS.get(alg), HMACAlgorithm) for alg in algorithms}
    return None if len(hmac) > 1 else hmac == {True}


def min_secret_bytes(algorithms: Sequence[str]) -> int:
    """The shortest HMAC secret the HS* ``algorithms`` accept: 32, or the largest hash size."""
    sizes = [
        int(alg.hash_alg().digest_size)
        for alg in map(_ALGORITHMS.get, algorithms)
        if isinstance(alg, HMACAlgorithm)
    ]
    return max(MIN_SECRET_BYTES, *sizes)


def key_problem(key: str, algorithms: Sequence[str]) -> str | None:
    """Why ``key`` cannot verify tokens signed with ``algorithms``, or ``None`` if it can.

    HS* take a shared secret of at least :func:`min_secret_bytes` bytes (RFC 8725
    §3.5: a short key can be brute-forced offline from one token); RS*, PS*,
    ES* and EdDSA take a PEM public key (RSA of at least 2048 bits, EC on the
    algorithm's curve), never a private key. The text never contains the key.
    ``algorithms`` must be known and of one family (see :class:`TokenVerifier`).
    """
    key = _pem(key)
    if hmac_family(algorithms):
        size, need = len(key.encode()), min_secret_bytes(algorithms)
        if size < need:
            strongest = max(algorithms, key=lambda alg: (int(alg[2:]), alg))
            return (
                f"it is {size} bytes; {strongest} needs at least {need} "
                "(RFC 7518 §3.2), such as 64 random characters"
            )
    for alg in algorithms:
        try:
            _prepare(alg, key)
        except ValueError as exc:
            return str(exc)
    return None


class TokenVerifier:
    """Verify JWTs signed with one of the pinned algorithms.

    Args:
        secret: the HMAC key of HS* algorithms, as a ``str`` or an object with
            ``reveal() -> str``; at least 32 bytes (64 for HS512): a shorter
            one is refused (RFC 8725 §3.5).
        public_key: the PEM public key of RS*, PS*, ES* or EdDSA algorithms
            (``\\n`` escapes are unfolded); RSA keys of at least 2048 bits.
            Exactly one of ``secret`` and ``public_key`` is given, the one the
            algorithms need.
        algorithms: the only algorithms a token header may name; all HS*, or
            none (one key serving both families invites algorithm confusion).
        audience: if set, ``aud`` must contain it; if unset, a token carrying
            ``aud`` is refused (it was meant for some other service).
        issuer: if set, ``iss`` must equal it.
        leeway_seconds: clock-skew allowance for ``exp``, ``nbf``, ``iat`` and
            the lifetime.
        max_lifetime_seconds: the longest lifetime (``exp - iat``) accepted;
            a longer-lived token is refused with ``lifetime_too_long``.
        clock: the time source; ``clock.time()`` is wall-clock epoch seconds.
        roles_claim: the claim holding a list of roles. A single ``role``
            string claim is read as well.
        cache_entries: how many accepted tokens (of at most
            :data:`MAX_CACHED_TOKEN_CHARS` characters) are remembered with
            their principal, the oldest forgotten first; ``0`` verifies every
            token in full. A remembered token is served only while the clock
            says it is valid (``nbf``/``iat`` reached, ``exp`` not, with the
            leeway, the same comparisons as a full check); once past them it
            is forgotten and checked in full, which names the error. A token
            that fails a check is never remembered. The configuration is
            fixed at construction (its attributes are read-only), so what was
            remembered stays true.

    Raises:
        ConfigError: naming the argument at fault (never showing a key).
    """

    def __init__(
        self,
        secret: str | SupportsReveal | None = None,
        *,
        public_key: str | SupportsReveal | None = None,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 0.0,
        max_lifetime_seconds: float = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Clock,
        roles_claim: str = "roles",
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        algs = tuple(algorithms)
        if not algs or any(alg not in _ALGORITHMS for alg in algs):
            bad = next((alg for alg in algs if alg not in _ALGORITHMS), algs)
            raise ConfigError(
                "algorithms", bad, f"expected a non-empty list of {sorted(_ALGORITHMS)}"
            )
        hmac = hmac_family(algs)
        if hmac is None:  # one key for HMAC and public-key algs: key confusion
            raise ConfigError("algorithms", algs, "do not mix HS* with public-key algorithms")
        name, given, other = ("secret", secret, public_key)
        if not hmac:
            name, given, other = ("public_key", public_key, secret)
        if other is not None:
            wrong = "public_key" if hmac else "secret"
            raise ConfigError(
                wrong, "<hidden>", f"{algs[0]} verifies with {name}; leave {wrong} unset"
            )
        key = given if isinstance(given, str) or given is None else given.reveal()
        if not isinstance(key, str) or not key:
            raise ConfigError(name, "<hidden>", "expected a non-empty string")
        if problem := key_problem(key, algs):
            raise ConfigError(name, "<hidden>", problem)
        if not math.isfinite(leeway_seconds) or leeway_seconds < 0:
            raise ConfigError("leeway_seconds", leeway_seconds, "expected a finite number >= 0")
        if not math.isfinite(max_lifetime_seconds) or max_lifetime_seconds <= 0:
            raise ConfigError(
                "max_lifetime_seconds", max_lifetime_seconds, "expected a finite number > 0"
            )
        if type(cache_entries) is not int or cache_entries < 0:
            raise ConfigError("cache_entries", cache_entries, "expected an integer >= 0")
        self._key: Any = key if hmac else _prepare(algs[0], _pem(key))
        self._clock, self._hmac = clock, hmac
        self._algorithms, self._audience, self._issuer = algs, audience, issuer
        self._algorithm_list = list(algs)
        self._leeway, self._roles_claim = float(leeway_seconds), roles_claim
        self._max_lifetime = float(max_lifetime_seconds)
        self._min_secret_bytes = min_secret_bytes(algs) if hmac else 0
        self._cache_entries = cache_entries
        self._accepted: dict[str, _Accepted] = {}

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The only algorithms a token header may name."""
        return self._algorithms

    @property
    def audience(self) -> str | None:
        """The audience ``aud`` must contain, or ``None`` (then no ``aud`` is accepted)."""
        return self._audience

    @property
    def issuer(self) -> str | None:
        """The issuer ``iss`` must equal, or ``None``."""
        return self._issuer

    @property
    def leeway_seconds(self) -> float:
        """The clock-skew allowance for ``exp``, ``nbf``, ``iat`` and the lifetime."""
        return self._leeway

    @property
    def max_lifetime_seconds(self) -> float:
        """The longest lifetime (``exp - iat``) accepted."""
        return self._max_lifetime

    @property
    def roles_claim(self) -> str:
        """The claim holding a list of roles."""
        return self._roles_claim

    @property
    def min_secret_bytes(self) -> int:
        """The shortest HMAC secret the pinned algorithms accept (0 for public-key ones)."""
        return self._min_secret_bytes

    @property
    def cached_tokens(self) -> int:
        """How many accepted tokens are remembered now (at most ``cache_entries``)."""
        return len(self._accepted)

    def __repr__(self) -> str:
        return (
            f"TokenVerifier(algorithms={list(self.algorithms)!r}, "
            f"audience={self.audience!r}, issuer={self.issuer!r})"
        )

    require_role = staticmethod(require_role)

    def verify_authorization_header(self, value: str | None) -> Principal:
        """Verify the token of an ``Authorization`` header value (``Bearer <token>``).

        Raises:
            AuthError: ``missing_token`` for an absent or blank header,
                ``malformed_token`` for another scheme or no token, or any
                error of :meth:`verify`.
        """
        if value is not None and value[:7] == "Bearer ":  # the usual shape: one lookup
            principal = self._remembered(value[7:])
            if principal is not None:
                return principal
        if value is None or not value.strip():
            raise AuthError("missing_token", "no Authorization header; send 'Bearer <token>'")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer":  # never echo it: a bare token would land in `scheme`
            raise AuthError(
                "malformed_token",
                "Authorization header must use the Bearer scheme: 'Bearer <token>'",
            )
        if not token.strip():
            raise AuthError("malformed_token", "Authorization header has no token after 'Bearer'")
        return self.verify(token.strip())

    def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its :class:`Principal`.

        Raises:
            AuthError: 401 with the precise :data:`AuthErrorCode`.
        """
        principal = self._remembered(token)
        if principal is not None:
            return principal
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(
                "malformed_token",
                f"token is {len(token)} characters; the limit is {MAX_TOKEN_CHARS}",
            )
        if token.count(".") != 2 or _WHITESPACE.search(token) is not None:
            raise AuthError(
                "malformed_token", "token is not three base64url segments joined by '.'"
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithm_list,
                audience=self.audience,
                issuer=self.issuer,
                options={  # _principal checks these against self._clock, and sub precisely
                    "require": ["sub", "exp", "iat"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise self._translate(exc, token) from None
        principal, not_before = self._principal(claims)
        self._remember(token, principal, not_before)
        return principal

    def _remembered(self, token: str) -> Principal | None:
        """The principal of ``token`` if it was accepted and the clock says it still is."""
        accepted = self._accepted.get(token) if len(token) <= MAX_CACHED_TOKEN_CHARS else None
        if accepted is None:
            return None
        now, leeway = self._clock.time(), self._leeway
        # The very comparisons _principal makes; the other checks do not depend on time.
        if now >= accepted.principal.expires_at + leeway or accepted.not_before > now + leeway:
            del self._accepted[token]  # checked in full again, which names the error
            return None
        return accepted.principal

    def _remember(self, token: str, principal: Principal, not_before: float) -> None:
        """Hold a token that passed every check, forgetting the oldest beyond the bound."""
        if self._cache_entries == 0 or len(token) > MAX_CACHED_TOKEN_CHARS:
            return
        accepted = self._accepted
        while len(accepted) >= self._cache_entries:
            del accepted[next(iter(accepted))]
        accepted[token] = _Accepted(principal, not_before)

    def issue(
        self,
        subject: str,
        *,
        roles: Sequence[str] = (),
        ttl_seconds: float = 3600,
        name: str | None = None,
        **extra_claims: Any,
    ) -> str:
        """Mint a token this verifier accepts (for tests, benchmarks and the dev CLI).

        Signs with the first pinned algorithm, which must be HS*; sets ``iat``,
        ``exp``, ``aud`` and ``iss`` from the clock and the configuration.
        ``ttl_seconds`` is at most :attr:`max_lifetime_seconds`.

        Raises:
            ValueError: naming the argument at fault.
        """
        if not self._hmac:
            raise ValueError(
                f"issue() needs an HS* algorithm; this verifier pins {self.algorithms}"
            )
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise ValueError(f"subject {subject!r:.40} is not a string of 1 to 256 characters")
        if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds is {ttl_seconds!r}; expected a finite number > 0")
        if ttl_seconds > self.max_lifetime_seconds:
            raise ValueError(
                f"ttl_seconds is {ttl_seconds:g}; this verifier accepts tokens that live at most "
                f"{self.max_lifetime_seconds:g}s (max_lifetime_seconds, "
                "SWITCHYARD_JWT_MAX_LIFETIME_SECONDS)"
            )
        if isinstance(roles, str):
            raise ValueError(f"roles is the string {roles!r}; pass a sequence such as [{roles!r}]")
        now = self._clock.time()
        iat = math.floor(now)
        # Rounded out to whole seconds, but never past the lifetime cap: verify() must accept it.
        exp: float = min(math.ceil(now + ttl_seconds), iat + self.max_lifetime_seconds)
        claims: dict[str, Any] = {"sub": subject, "iat": iat}
        claims["exp"] = int(exp) if float(exp).is_integer() else exp
        optional = {self.roles_claim: sorted(set(roles)), "name": name}
        optional |= {"aud": self.audience, "iss": self.issuer}
        claims |= {k: v for k, v in optional.items() if v}
        if clash := sorted(set(extra_claims) & (set(claims) | set(optional))):
            raise ValueError(f"extra claims {clash} clash with claims that issue() sets itself")
        return jwt.encode(claims | extra_claims, self._key, algorithm=self.algorithms[0])

    def _translate(self, exc: jwt.InvalidTokenError, token: str) -> AuthError:
        """Map a pyjwt error to an :class:`AuthError`; pyjwt's own text is never shown."""
        if isinstance(exc, jwt.InvalidSignatureError):
            return AuthError("invalid_token", "token signature does not match the secret")
        if isinstance(exc, jwt.DecodeError):
            return AuthError("malformed_token", "token segments are not base64url-encoded JSON")
        if isinstance(exc, jwt.InvalidAlgorithmError):
            alg = jwt.get_unverified_header(token).get("alg")
            if isinstance(alg, str) and alg.lower() == "none":
                return AuthError("invalid_token", "token is unsigned (alg 'none'); never accepted")
            shown = f"algorithm {str(alg)[:16]!r}" if alg else "no algorithm"
            pinned = ", ".join(self.algorithms)
            return AuthError("invalid_token", f"token names {shown}; only {pinned} is accepted")
        if isinstance(exc, jwt.MissingRequiredClaimError):
            why = {"aud": f"audience {self.audience!r}", "iss": f"issuer {self.issuer!r}"}
            need = f"this verifier requires {why[exc.claim]}" if exc.claim in why else "required"
            if exc.claim == "iat":
                need = "required, to bound the token's lifetime (exp - iat)"
            return AuthError("missing_claim", f"token has no {exc.claim!r} claim; {need}")
        if isinstance(exc, jwt.InvalidAudienceError):
            if self.audience is None:
                return AuthError(
                    "invalid_audience",
                    "token names an audience ('aud'); this verifier expects none",
                )
            return AuthError("invalid_audience", f"token audience is not {self.audience!r}")
        if isinstance(exc, jwt.InvalidIssuerError):
            return AuthError("invalid_issuer", f"token issuer is not {self.issuer!r}")
        return AuthError("invalid_token", f"token was rejected ({type(exc).__name__})")

    def _principal(self, claims: dict[str, Any]) -> tuple[Principal, float]:
        """Check the claims pyjwt leaves to us (types, times, roles) and build the principal.

        Returns it with its not-before instant: the latest of ``nbf`` and ``iat``.
        """
        sub = claims["sub"]
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUBJECT_CHARS:
            got = f"{len(sub)} characters" if isinstance(sub, str) else _json_type(sub)
            raise AuthError(
                "invalid_token",
                f"claim 'sub' must be a string of 1 to {MAX_SUBJECT_CHARS} characters, got {got}",
            )
        now, leeway = self._clock.time(), self.leeway_seconds
        times = {k: _numeric_date(claims[k], k) for k in ("exp", "nbf", "iat") if k in claims}
        if now >= times["exp"] + leeway:
            ago = _secs(now - times["exp"])
            raise AuthError(
                "token_expired",
                f"token expired {ago}s ago (leeway {_secs(leeway)}s); get a new one",
            )
        lifetime, cap = times["exp"] - times["iat"], self.max_lifetime_seconds
        if lifetime > cap + leeway:
            raise AuthError(
                "lifetime_too_long",
                f"token lives {_secs(lifetime)}s (exp - iat); this verifier accepts at most "
                f"{_secs(cap)}s (leeway {_secs(leeway)}s); get a shorter-lived token",
            )
        for key, what in (("nbf", "is not valid until"), ("iat", "was issued")):
            if key in times and times[key] > now + leeway:
                raise AuthError(
                    "token_not_yet_valid",
                    f"token {what} {_secs(times[key] - now)}s from now "
                    f"(leeway {_secs(leeway)}s); check the issuer's clock",
                )
        name = claims.get("name")
        if name is not None and not isinstance(name, str):
            raise AuthError(
                "invalid_token", f"claim 'name' must be a string, got {_json_type(name)}"
            )
        roles: set[str] = set()
        for claim in dict.fromkeys((self.roles_claim, "role")):
            value = claims.get(claim)
            items = [value] if isinstance(value, str) else value
            if value is not None and not (
                isinstance(items, list) and all(isinstance(r, str) and r for r in items)
            ):
                raise AuthError(
                    "invalid_token",
                    f"claim {claim!r} must be a non-empty string or an array of them, got "
                    + (
                        "an array with a non-string or empty item"
                        if isinstance(value, list)
                        else _json_type(value)
                    ),
                )
            roles.update(items or ())
        principal = Principal(
            subject=sub,
            roles=frozenset(roles),
            name=name,
            expires_at=times["exp"],
            claims=types.MappingProxyType(claims),
        )
        return principal, max(times["iat"], times.get("nbf", -math.inf))


class _Accepted(NamedTuple):
    """A token that passed every check: its principal and the latest of its nbf and iat."""

    principal: Principal
    not_before: float


def _numeric_date(value: object, claim: str) -> float:
    """Read a NumericDate (epoch seconds), or raise ``invalid_token`` naming the claim."""
    problem = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problem = _json_type(value)
    else:
        try:
            number = float(value)  # an int beyond a float's range raises OverflowError
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            problem = "a non-finite number"
    if problem is not None:
        raise AuthError(
            "invalid_token",
            f"claim {claim!r} must be a number of seconds since the epoch, got {problem}",
        )
    return number


def _json_type(value: object) -> str:
    """Name a claim's JSON type without echoing its content."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a non-finite number"
    if value == "":
        return "an empty string"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _secs(seconds: float) -> str:
    """Format seconds compactly: ``5``, ``0.25``, ``86400``, ``1.84e+19``."""
    if abs(seconds) >= 1e9:  # 31 years and more: the digits say nothing more
        return f"{seconds:.3g}"
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
