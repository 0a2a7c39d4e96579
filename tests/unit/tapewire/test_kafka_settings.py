"""KafkaSettings: TLS and SASL reach librdkafka as set, and inconsistent combinations are refused
at start-up with the variable to fix, instead of a client that retries a handshake forever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tapewire.settings import KafkaSettings, TopicSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("KAFKA_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_plaintext_by_default_with_no_tls_keys() -> None:
    conf = KafkaSettings().as_librdkafka_dict()
    assert conf["security.protocol"] == "PLAINTEXT"
    assert not [key for key in conf if key.startswith(("ssl.", "sasl."))]


def test_sasl_ssl_with_a_ca_and_a_client_certificate(pem: Path) -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="tapewire",
        sasl_password=SecretStr("pw"),
        ssl_ca_location=pem,
        ssl_certificate_location=pem,
        ssl_key_location=pem,
        ssl_key_password=SecretStr("kp"),
    )
    conf = settings.as_librdkafka_dict()
    assert {k: v for k, v in conf.items() if k.startswith(("ssl.", "sasl."))} == {
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "tapewire",
        "sasl.password": "pw",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(pem),
        "ssl.certificate.location": str(pem),
        "ssl.key.location": str(pem),
        "ssl.key.password": "kp",
    }
    assert "pw" not in repr(settings) and "kp" not in repr(settings)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch, pem: Path) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", str(pem))
    monkeypatch.setenv("KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "none")
    monkeypatch.setenv("KAFKA_SSL_CERTIFICATE_LOCATION", "")  # compose's ${X:-}: unset
    conf = KafkaSettings().as_librdkafka_dict()
    assert (conf["ssl.ca.location"], conf["ssl.endpoint.identification.algorithm"]) == (str(pem), "none")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"),
        ({"sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "PLAIN"}, "does not use SASL"),
        ({"security_protocol": "PLAINTEXT", "ssl_ca_location": "PEM"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_certificate_location": "PEM"}, "go together"),
        ({"security_protocol": "SSL", "ssl_ca_location": "/nonexistent/ca.pem"}, "not a readable file"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_inconsistent_settings_are_refused(values: dict[str, str], message: str, pem: Path) -> None:
    resolved = {key: str(pem) if value == "PEM" else value for key, value in values.items()}
    with pytest.raises(ValidationError, match=message):
        KafkaSettings(**resolved)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("replication", "asked", "effective"),
    [(1, 0, 1), (2, 0, 1), (3, 0, 2), (5, 0, 2), (3, 3, 3), (3, 1, 1), (1, 2, 1)],
)
def test_min_insync_replicas_defaults_to_two_of_three_and_never_exceeds_the_replicas(
    replication: int, asked: int, effective: int
) -> None:
    topics = TopicSettings(replication_factor=replication, min_insync_replicas=asked)
    assert topics.effective_min_insync_replicas == effective
