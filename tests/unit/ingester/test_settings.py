"""Settings come from the environment and fail with messages that name the variable to fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingester.settings import IngesterSettings
from tapewire.startup import explain


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("INGESTER_", "KAFKA_", "TAPEWIRE_", "AUTH_")):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = IngesterSettings()
    assert (settings.source, settings.instruments, settings.rate, settings.trade_ratio) == (
        "simulator",
        50,
        200,
        0.3,
    )
    assert (settings.queue_size, settings.queue_policy, settings.metrics_port) == (10_000, "block", 9101)
    assert (settings.max_ticks, settings.seed, settings.venue, settings.shutdown_timeout_s) == (
        0,
        None,
        "SIM",
        10,
    )
    assert settings.topics.raw == "tt_raw_data"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTER_SOURCE", "replay")
    monkeypatch.setenv("INGESTER_REPLAY_PATH", "-")
    monkeypatch.setenv("INGESTER_REPLAY_SPEED", "0")
    monkeypatch.setenv("INGESTER_QUEUE_POLICY", "drop_oldest")
    monkeypatch.setenv("INGESTER_SEED", "7")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("TAPEWIRE_TOPIC_RAW", "raw_test")
    settings = IngesterSettings()
    assert (settings.source, settings.replay_path, settings.replay_speed) == ("replay", "-", 0)
    assert (settings.queue_policy, settings.seed) == ("drop_oldest", 7)
    assert (settings.kafka.bootstrap_servers, settings.topics.raw) == ("kafka:9092", "raw_test")


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        IngesterSettings().rate = 5


def error_text(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        IngesterSettings()
    return explain(caught.value, IngesterSettings)


def test_a_replay_without_a_path_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    text = error_text(monkeypatch, INGESTER_SOURCE="replay")
    assert "INGESTER_REPLAY_PATH" in text and '"-" for stdin' in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INGESTER_SOURCE", "kafka"),
        ("INGESTER_RATE", "0"),
        ("INGESTER_INSTRUMENTS", "0"),
        ("INGESTER_TRADE_RATIO", "1.5"),
        ("INGESTER_REPLAY_SPEED", "-1"),
        ("INGESTER_QUEUE_SIZE", "0"),
        ("INGESTER_QUEUE_POLICY", "drop_newest"),
        ("INGESTER_METRICS_PORT", "70000"),
        ("INGESTER_GRPC_PORT", "-1"),
        ("INGESTER_GRPC_MAX_STREAMS", "0"),
        ("INGESTER_GRPC_MAX_MESSAGE_BYTES", "10"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    assert error_text(monkeypatch, **{name: value}).strip().startswith(f"{name}:")


def test_bad_shared_settings_name_their_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        error_text(monkeypatch, KAFKA_SESSION_TIMEOUT_MS="5").strip().startswith("KAFKA_SESSION_TIMEOUT_MS:")
    )


def test_grpc_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = IngesterSettings()
    assert (settings.grpc_enabled, settings.grpc_host, settings.grpc_port) == (True, "127.0.0.1", 50052)
    assert not settings.auth.enabled
    monkeypatch.setenv("INGESTER_SOURCE", "none")
    monkeypatch.setenv("INGESTER_GRPC_HOST", "127.0.0.1")
    monkeypatch.setenv("INGESTER_GRPC_PORT", "6000")
    monkeypatch.setenv("INGESTER_GRPC_MAX_STREAMS", "8")
    monkeypatch.setenv("INGESTER_GRPC_MAX_MESSAGE_BYTES", "2048")
    monkeypatch.setenv("AUTH_HS256_SECRET", "x" * 32)
    settings = IngesterSettings()
    assert settings.source == "none" and settings.auth.enabled
    options = settings.grpc_options()
    assert (options.host, options.port, options.max_receive_message_bytes) == ("127.0.0.1", 6000, 2048)
    assert (options.max_concurrent_rpcs, options.max_concurrent_streams) == (8, 8)


def test_no_source_needs_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    text = error_text(monkeypatch, INGESTER_SOURCE="none", INGESTER_GRPC_ENABLED="false")
    assert "INGESTER_GRPC_ENABLED" in text


def test_bad_auth_settings_name_their_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert error_text(monkeypatch, AUTH_HS256_SECRET="short").strip().startswith("AUTH_HS256_SECRET:")


def test_the_record_bound_and_the_ack_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = IngesterSettings()
    # The processor's default bound: the ingester never publishes what the processor would refuse.
    assert (settings.max_record_bytes, settings.push_ack_timeout_s) == (4_096, 30)
    monkeypatch.setenv("INGESTER_MAX_RECORD_BYTES", "1000001")
    with pytest.raises(ValidationError) as caught:
        IngesterSettings()
    assert "INGESTER_MAX_RECORD_BYTES" in explain(caught.value, IngesterSettings)
