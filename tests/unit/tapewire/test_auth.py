"""Token verification: what is accepted, what is refused and why, and the settings behind it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError

from tapewire.auth import (
    ANONYMOUS,
    MAX_TOKEN_BYTES,
    AuthSettings,
    Principal,
    TokenVerifier,
    Unauthorized,
    bearer_token,
)
from tapewire.errors import ConfigurationError, TapewireError

SECRET = "s3cret-that-is-long-enough-for-hs256!"
OTHER_SECRET = "another-secret-that-is-also-long-enough"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTH_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": "alice", "exp": now + 300, "iat": now, "roles": ["trader"]}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers)


def b64(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """A token with the given alg header and no signature (what an attacker would send)."""
    return f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(payload)}."


def hand_signed(payload: dict[str, Any]) -> str:
    """An HS256 token built by hand: PyJWT itself refuses to encode some of the bad claims tested."""
    return hand_signed_raw(json.dumps(payload).encode())


def hand_signed_raw(payload: bytes) -> str:
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}"
    return (
        f"{signing_input}.{b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())}"
    )


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier.from_settings(AuthSettings(**{"hs256_secret": SecretStr(SECRET), **settings}))


def refusal(check: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        check.verify(token)
    assert token not in caught.value.reason  # never echoed back
    return caught.value.reason


def test_a_valid_hs256_token_names_the_caller_and_its_roles() -> None:
    principal = verifier().verify(hs256(claims(roles=["trader", "viewer"])))
    assert principal == Principal("alice", frozenset({"trader", "viewer"}), is_admin=False)


def test_the_admin_role_makes_an_admin() -> None:
    assert verifier().verify(hs256(claims(roles=["admin"]))).is_admin
    assert verifier(admin_role="ops").verify(hs256(claims(roles=["ops"]))).is_admin
    assert not verifier(admin_role="ops").verify(hs256(claims(roles=["admin"]))).is_admin


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["a", "b"], {"a", "b"}),
        ("a b  admin", {"a", "b", "admin"}),
        ("", set()),
        (None, set()),  # no claim at all
    ],
)
def test_roles_come_as_a_list_or_a_space_separated_string(roles: object, expected: set[str]) -> None:
    assert verifier().verify(hs256(claims(roles=roles))).roles == expected


@pytest.mark.parametrize("roles", [["a", 1], {"a": True}, 7])
def test_a_malformed_roles_claim_is_refused(roles: object) -> None:
    assert "roles" in refusal(verifier(), hs256(claims(roles=roles)))


def test_the_roles_and_user_claims_can_be_renamed() -> None:
    check = verifier(roles_claim="scope", user_claim="uid")
    principal = check.verify(hs256(claims(sub=None, uid="svc-1", scope="admin read")))
    assert (principal.user_id, principal.roles, principal.is_admin) == (
        "svc-1",
        frozenset({"admin", "read"}),
        True,
    )


def test_an_expired_token_is_refused_beyond_the_leeway() -> None:
    assert refusal(verifier(), hs256(claims(exp=int(time.time()) - 60))) == "token expired"
    # Within the leeway (clock skew) it still passes.
    assert verifier(leeway_s=120).verify(hs256(claims(exp=int(time.time()) - 60))).user_id == "alice"


def test_exp_is_required() -> None:
    assert refusal(verifier(), hs256(claims(exp=None))) == 'token has no "exp" claim'


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["9999999999", "1", True, False, None, [1], {"t": 1}])
def test_time_claims_must_be_json_numbers(claim: str, value: object) -> None:
    # PyJWT alone takes "9999999999" through int(): a string exp would be honoured.
    token = hand_signed({**claims(), claim: value})
    assert refusal(verifier(), token) == f'token "{claim}" claim must be a number'


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_exp_is_refused(literal: str) -> None:
    payload = json.dumps(claims(exp=1)).replace('"exp": 1', f'"exp": {literal}').encode()
    assert refusal(verifier(), hand_signed_raw(payload)) == 'token "exp" claim must be a number'


def test_float_time_claims_are_accepted() -> None:
    now = time.time()
    assert verifier().verify(hs256(claims(exp=now + 300.5, iat=now, nbf=now - 1.5))).user_id == "alice"


def test_a_token_not_valid_yet_is_refused() -> None:
    assert refusal(verifier(), hs256(claims(nbf=int(time.time()) + 600))) == "token not valid yet"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert refusal(verifier(), hs256(claims(), secret=OTHER_SECRET)) == "token signature does not verify"


def test_alg_none_is_always_refused() -> None:
    reason = refusal(verifier(), unsigned(claims()))
    assert "'none' not allowed" in reason


def test_an_algorithm_without_a_configured_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    rs256_token = jwt.encode(claims(), rsa_key, algorithm="RS256")
    assert "'RS256' not allowed" in refusal(verifier(), rs256_token)
    hs512_token = jwt.encode(
        claims(), SECRET + "-and-more-for-hs512-which-wants-64-bytes!!", algorithm="HS512"
    )
    assert "'HS512' not allowed" in refusal(verifier(), hs512_token)


@pytest.mark.parametrize(
    ("sub", "reason"),
    [
        (None, 'token has no "sub" claim'),
        ("", "printable"),
        ("has space", "printable"),
        ("x" * 129, "printable"),
        ("bell\x07", "printable"),
        (42, '"sub" claim must be a string'),
    ],
)
def test_the_user_claim_must_be_a_short_printable_name(sub: object, reason: str) -> None:
    assert reason in refusal(verifier(), hand_signed(claims(sub=sub)))


def test_a_user_id_of_128_characters_is_accepted() -> None:
    assert verifier().verify(hs256(claims(sub="u" * 128))).user_id == "u" * 128


def test_audience_and_issuer_are_checked_when_configured() -> None:
    check = verifier(audience="tapewire", issuer="https://id.example")
    good = claims(aud="tapewire", iss="https://id.example")
    assert check.verify(hs256(good)).user_id == "alice"
    assert refusal(check, hs256({**good, "aud": "elsewhere"})) == "token audience not accepted"
    assert refusal(check, hs256({**good, "iss": "https://evil.example"})) == "token issuer not accepted"
    assert refusal(check, hs256(claims(iss="https://id.example"))) == 'token has no "aud" claim'
    assert refusal(check, hs256(claims(aud="tapewire"))) == 'token has no "iss" claim'


def test_audience_is_not_checked_when_not_configured() -> None:
    assert verifier().verify(hs256(claims(aud="whatever"))).user_id == "alice"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 20, "🙂.🙂.🙂"])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refusal(verifier(), token) == "malformed token"


def test_a_token_without_an_algorithm_is_refused() -> None:
    assert refusal(verifier(), f"{b64({'typ': 'JWT'})}.{b64(claims())}.") == "token header names no algorithm"


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(Unauthorized, match="missing bearer token"):
        verifier().verify("")


def test_an_oversized_token_is_refused_before_decoding() -> None:
    token = hs256(claims(pad="x" * MAX_TOKEN_BYTES))
    assert "longer than" in refusal(verifier(), token)


def test_rs256_accepts_the_issuers_key_and_refuses_any_other(
    rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    check = TokenVerifier.from_settings(AuthSettings(rs256_public_key=SecretStr(public_pem(rsa_key))))
    assert check.algorithms == {"RS256"}
    assert check.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).user_id == "alice"
    forged = jwt.encode(claims(), other_rsa_key, algorithm="RS256")
    assert refusal(check, forged) == "token signature does not verify"
    assert "'HS256' not allowed" in refusal(check, hs256(claims()))


def test_the_public_key_as_an_hmac_secret_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    # The classic algorithm confusion: HS256 "signed" with the (public) RSA key.
    check = TokenVerifier.from_settings(AuthSettings(rs256_public_key=SecretStr(public_pem(rsa_key))))
    forged = unsigned(claims(), alg="HS256")
    assert "'HS256' not allowed" in refusal(check, forged)


def test_both_keys_configured_accept_either_algorithm(rsa_key: rsa.RSAPrivateKey) -> None:
    check = verifier(rs256_public_key=SecretStr(public_pem(rsa_key)))
    assert check.algorithms == {"HS256", "RS256"}
    assert check.verify(hs256(claims())).user_id == "alice"
    assert check.verify(jwt.encode(claims(), rsa_key, algorithm="RS256")).user_id == "alice"


def test_verify_header_parses_the_bearer_scheme() -> None:
    check = verifier()
    assert check.verify_header(f"Bearer {hs256(claims())}").user_id == "alice"
    with pytest.raises(Unauthorized, match="missing bearer token"):
        check.verify_header(None)
    with pytest.raises(Unauthorized, match="not a bearer token"):
        check.verify_header("Basic dXNlcjpwYXNz")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer a b", None),
        ("Basic abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_unauthorized_is_a_tapewire_error() -> None:
    assert issubclass(Unauthorized, TapewireError)


def test_anonymous_principals() -> None:
    assert Principal("anonymous", frozenset(), is_admin=False) == ANONYMOUS
    assert Principal.anonymous(admin=True).is_admin
    assert Principal.anonymous(admin=True).user_id == "anonymous"


# Settings


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Iterator[Path]:
    path = tmp_path / "issuer.pem"
    path.write_text(public_pem(rsa_key))
    yield path


def test_auth_is_off_without_a_key() -> None:
    settings = AuthSettings()
    assert not settings.enabled
    assert TokenVerifier.optional(settings) is None
    with pytest.raises(ConfigurationError):
        TokenVerifier.from_settings(settings)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, key_file: Path) -> None:
    monkeypatch.setenv("AUTH_HS256_SECRET", SECRET)
    monkeypatch.setenv("AUTH_RS256_PUBLIC_KEY_FILE", str(key_file))
    monkeypatch.setenv("AUTH_AUDIENCE", "tapewire")
    monkeypatch.setenv("AUTH_ISSUER", "https://id.example")
    monkeypatch.setenv("AUTH_LEEWAY_S", "2.5")
    monkeypatch.setenv("AUTH_ADMIN_ROLE", "ops")
    monkeypatch.setenv("AUTH_ROLES_CLAIM", "scope")
    monkeypatch.setenv("AUTH_USER_CLAIM", "uid")
    settings = AuthSettings()
    assert settings.enabled
    assert settings.rs256_public_key_pem == key_file.read_text()
    assert (settings.audience, settings.issuer, settings.leeway_s) == ("tapewire", "https://id.example", 2.5)
    assert (settings.admin_role, settings.roles_claim, settings.user_claim) == ("ops", "scope", "uid")
    assert TokenVerifier.from_settings(settings).algorithms == {"HS256", "RS256"}


def test_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_HS256_SECRET", SECRET)
    settings = AuthSettings()
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_empty_variables_mean_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_HS256_SECRET", "")
    monkeypatch.setenv("AUTH_RS256_PUBLIC_KEY_FILE", "")
    assert not AuthSettings().enabled


def settings_error(**env: str) -> str:
    for name, value in env.items():
        os.environ[name] = value
    try:
        with pytest.raises(ValidationError) as caught:
            AuthSettings()
        return str(caught.value)
    finally:
        for name in env:
            del os.environ[name]


def test_an_unreadable_key_file_fails_at_start_up(tmp_path: Path) -> None:
    message = settings_error(AUTH_RS256_PUBLIC_KEY_FILE=str(tmp_path / "missing.pem"))
    assert "AUTH_RS256_PUBLIC_KEY_FILE" in message and "No such file" in message


def test_a_key_that_is_not_an_rsa_public_key_fails_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a key")
    assert "not a PEM public key" in settings_error(AUTH_RS256_PUBLIC_KEY_FILE=str(tmp_path / "bad.pem"))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert "at least 2048" in settings_error(AUTH_RS256_PUBLIC_KEY=public_pem(small))


def test_key_and_key_file_together_are_refused(key_file: Path) -> None:
    message = settings_error(
        AUTH_RS256_PUBLIC_KEY=key_file.read_text(), AUTH_RS256_PUBLIC_KEY_FILE=str(key_file)
    )
    assert "not both" in message


def test_a_short_hs256_secret_is_refused() -> None:
    assert "at least 32 bytes" in settings_error(AUTH_HS256_SECRET="short")
