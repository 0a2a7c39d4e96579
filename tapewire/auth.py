"""Who is calling: JWT bearer tokens verified the same way by every entry point.

dashboard_api (WebSocket, REST, gRPC) and the ingester (gRPC) take a token from the caller
("authorization: Bearer <jwt>"), and `TokenVerifier.verify` turns it into a `Principal` or raises
`Unauthorized` with a reason that is safe to send back (it never contains the token).

Tokens are signed by whoever issues them, not by tapewire: HS256 with a shared secret
(`AUTH_HS256_SECRET`), RS256 with the issuer's public key (`AUTH_RS256_PUBLIC_KEY` or
`AUTH_RS256_PUBLIC_KEY_FILE`), or both at once, e.g. while moving from one to the other; a
token's own `alg` header then picks the key, and an algorithm whose key is not configured is
refused, as is "none", always. `exp` is required; `nbf` and `iat` are honoured (all three must be
JSON numbers); `aud` and `iss` are checked when configured.

With no key configured auth is off: callers get `Principal.anonymous(admin=True)`, so a local
stack works without tokens, admin endpoints included. Never expose such a deployment.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import exceptions as jwt_errors
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tapewire.errors import ConfigurationError, TapewireError

# RFC 7518 §3.2: an HS256 key shorter than the hash output weakens it (and PyJWT warns).
MIN_HS256_SECRET_BYTES = 32
MIN_RSA_KEY_BITS = 2048
# A real token is a few hundred bytes; anything far bigger is refused before any parsing work.
MAX_TOKEN_BYTES = 8 * 1024
MAX_USER_ID_LENGTH = 128
ANONYMOUS_USER = "anonymous"
# RFC 7519 §2 NumericDate claims: JSON numbers, never strings or booleans.
TIME_CLAIMS = ("exp", "nbf", "iat")


class Unauthorized(TapewireError):
    """The caller could not be authenticated; `reason` is short and safe to return to them."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthSettings(BaseSettings):
    """How tokens are verified (prefix `AUTH_`). No key configured = auth off."""

    model_config = SettingsConfigDict(env_prefix="AUTH_", frozen=True, extra="ignore")

    hs256_secret: SecretStr | None = None
    # The public key is no secret, but it is PEM text: kept out of reprs all the same.
    rs256_public_key: SecretStr | None = None
    rs256_public_key_file: Path | None = None
    audience: str | None = None
    issuer: str | None = None
    # Clock skew tolerated on exp, nbf and iat between the issuer and us.
    leeway_s: float = Field(default=5.0, ge=0, le=300)
    admin_role: str = Field(default="admin", min_length=1)
    # A JSON list of strings, or one space-separated string (the OAuth "scope" style).
    roles_claim: str = Field(default="roles", min_length=1)
    user_claim: str = Field(default="sub", min_length=1)
    # With no key, a service refuses to listen beyond loopback unless this says it may: serving
    # anyone who reaches the port must be a decision, not a default (see `exposure`).
    allow_anonymous: bool = False

    # The file's content, read once when the settings are built so that a bad path fails at start-up.
    _key_from_file: str | None = PrivateAttr(default=None)

    @property
    def enabled(self) -> bool:
        return self.hs256_secret is not None or self.rs256_public_key_pem is not None

    @property
    def rs256_public_key_pem(self) -> str | None:
        """The RS256 key's PEM text, from AUTH_RS256_PUBLIC_KEY or from the file."""
        if self.rs256_public_key is not None:
            return self.rs256_public_key.get_secret_value()
        return self._key_from_file

    @field_validator("hs256_secret", "rs256_public_key", "rs256_public_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose files pass `AUTH_HS256_SECRET: ${AUTH_HS256_SECRET:-}`: empty means "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("hs256_secret")
    @classmethod
    def _secret_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_HS256_SECRET_BYTES} bytes")
        return value

    @field_validator("rs256_public_key")
    @classmethod
    def _key_is_an_rsa_public_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            load_rsa_public_key(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _key_file_is_readable(self) -> AuthSettings:
        path = self.rs256_public_key_file
        if path is None:
            return self
        if self.rs256_public_key is not None:
            raise ValueError("set AUTH_RS256_PUBLIC_KEY or AUTH_RS256_PUBLIC_KEY_FILE, not both")
        self._key_from_file = _read_key_file(path)
        try:
            load_rsa_public_key(self._key_from_file)
        except ValueError as exc:
            raise ValueError(f"AUTH_RS256_PUBLIC_KEY_FILE={path}: {exc}") from exc
        return self


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a listener on this machine: `localhost` or a loopback
    address. The wildcards (0.0.0.0, ::, empty) and any other name or address do not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(auth: AuthSettings, listeners: Mapping[str, str]) -> str | None:
    """Why listening on `listeners` (variable name -> host) would serve unauthenticated clients
    from the network, or None when it would not: auth on, every listener on loopback, or
    AUTH_ALLOW_ANONYMOUS=true."""
    if auth.enabled or auth.allow_anonymous:
        return None
    exposed = [
        f"{name}={host or '(all interfaces)'}" for name, host in listeners.items() if not is_loopback(host)
    ]
    if not exposed:
        return None
    return (
        f"auth is off and {', '.join(exposed)} would serve anyone on the network: set "
        "AUTH_HS256_SECRET or AUTH_RS256_PUBLIC_KEY[_FILE], listen on 127.0.0.1, or set "
        "AUTH_ALLOW_ANONYMOUS=true to serve unauthenticated clients on purpose"
    )


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"AUTH_RS256_PUBLIC_KEY_FILE={path}: cannot read it ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"AUTH_RS256_PUBLIC_KEY_FILE={path}: not a PEM text file") from exc


def load_rsa_public_key(pem: str) -> RSAPublicKey:
    """The RSA public key in `pem`; ValueError saying what is wrong with it otherwise."""
    try:
        key = load_pem_public_key(pem.strip().encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key (-----BEGIN PUBLIC KEY-----)") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise ValueError(f"an RSA key of {key.key_size} bits; at least {MIN_RSA_KEY_BITS} needed")
    return key


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (or the anonymous one when auth is off)."""

    user_id: str
    roles: frozenset[str] = frozenset()
    is_admin: bool = False

    @classmethod
    def anonymous(cls, admin: bool) -> Principal:
        """The caller when auth is off; `admin=True` lets it use admin endpoints too."""
        return cls(ANONYMOUS_USER, frozenset(), is_admin=admin)


ANONYMOUS = Principal.anonymous(admin=False)


def bearer_token(header_value: str | None) -> str | None:
    """The token of an "Authorization: Bearer <token>" value (any case of "Bearer"), else None."""
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class TokenVerifier:
    """Verifies JWTs against the configured keys; build it with `from_settings`."""

    def __init__(
        self,
        settings: AuthSettings,
        keys: dict[str, bytes | RSAPublicKey],
    ) -> None:
        if not keys:
            raise ConfigurationError("no token key: set AUTH_HS256_SECRET or AUTH_RS256_PUBLIC_KEY[_FILE]")
        self._settings = settings
        self._keys = keys  # algorithm -> key; only these algorithms are ever accepted

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenVerifier:
        """A verifier for the configured keys; ConfigurationError when auth is off (see `optional`)."""
        keys: dict[str, bytes | RSAPublicKey] = {}
        if settings.hs256_secret is not None:
            keys["HS256"] = settings.hs256_secret.get_secret_value().encode()
        pem = settings.rs256_public_key_pem
        if pem is not None:
            try:
                keys["RS256"] = load_rsa_public_key(pem)
            except ValueError as exc:
                raise ConfigurationError(f"the RS256 public key: {exc}") from exc
        return cls(settings, keys)

    @classmethod
    def optional(cls, settings: AuthSettings) -> TokenVerifier | None:
        """A verifier when auth is configured, None when it is off."""
        return cls.from_settings(settings) if settings.enabled else None

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify_header(self, authorization: str | None) -> Principal:
        """The caller of an Authorization header value ("Bearer <jwt>"); raises `Unauthorized`."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthorized("missing bearer token" if not authorization else "not a bearer token")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        """The caller a token names; raises `Unauthorized` with the reason it is not acceptable."""
        if not token:
            raise Unauthorized("missing bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"token longer than {MAX_TOKEN_BYTES} bytes")
        claims = self._decode(token)
        roles = self._roles(claims)
        return Principal(self._user_id(claims), roles, is_admin=self._settings.admin_role in roles)

    def _decode(self, token: str) -> dict[str, Any]:
        settings = self._settings
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("malformed token") from exc
        if not isinstance(algorithm, str):
            raise Unauthorized("token header names no algorithm")
        if algorithm not in self._keys:
            allowed = ", ".join(sorted(self._keys))
            raise Unauthorized(f"token algorithm {algorithm[:16]!r} not allowed (allowed: {allowed})")
        _check_time_claims(token)
        required = ["exp"] + (["aud"] if settings.audience else []) + (["iss"] if settings.issuer else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._keys[algorithm],
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": required, "verify_aud": settings.audience is not None},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(_reason(exc)) from exc
        return claims

    def _user_id(self, claims: dict[str, Any]) -> str:
        name = self._settings.user_claim
        value = claims.get(name)
        if value is None:
            raise Unauthorized(f'token has no "{name}" claim')
        if not isinstance(value, str) or not is_valid_user_id(value):
            raise Unauthorized(
                f'"{name}" claim must be 1-{MAX_USER_ID_LENGTH} printable characters without spaces'
            )
        return value

    def _roles(self, claims: dict[str, Any]) -> frozenset[str]:
        name = self._settings.roles_claim
        value = claims.get(name)
        if value is None:
            return frozenset()
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(role, str) for role in value):
            return frozenset(value)
        raise Unauthorized(f'"{name}" claim must be a list of strings or a space-separated string')


def _check_time_claims(token: str) -> None:
    """Refuse exp/nbf/iat that are not JSON numbers: PyJWT would take "9999999999" (a string)
    through int(), and a bool as 0 or 1, so such a token would pass where its issuer meant no
    such thing. Read before the signature is checked, which is safe: this can only refuse."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("malformed token") from exc
    for name in TIME_CLAIMS:
        if name in claims and not _is_number(claims[name]):
            raise Unauthorized(f'token "{name}" claim must be a number')


def _is_number(value: object) -> bool:
    # Python's json reads NaN and Infinity too: not numbers a time can be.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def is_valid_user_id(value: str) -> bool:
    """1-128 printable characters, none of them whitespace (user ids go into keys and logs)."""
    return (
        0 < len(value) <= MAX_USER_ID_LENGTH
        and value.isprintable()
        and not any(char.isspace() for char in value)
    )


def _reason(error: jwt.InvalidTokenError) -> str:
    """A short reason for a PyJWT error; the most specific classes first (several subclass others)."""
    reasons: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
        (jwt.ExpiredSignatureError, "token expired"),
        (jwt.ImmatureSignatureError, "token not valid yet"),
        (jwt.InvalidAudienceError, "token audience not accepted"),
        (jwt.InvalidIssuerError, "token issuer not accepted"),
        (jwt.InvalidSignatureError, "token signature does not verify"),
        (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
        (jwt.InvalidIssuedAtError, 'token "iat" claim invalid'),
        (jwt_errors.InvalidSubjectError, 'token "sub" claim must be a string'),
    )
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f'token has no "{error.claim}" claim'
    for kind, reason in reasons:
        if isinstance(error, kind):
            return reason
    if isinstance(error, jwt.DecodeError):
        return "malformed token"
    return "invalid token"
