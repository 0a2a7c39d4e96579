"""Connection and naming settings shared by the services.

Each service composes its own frozen settings class from these pieces. Every value comes from
the environment (documented in the README); tests build them directly with their own topics,
key prefix and schema instead of patching anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_SAFE_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class KafkaSettings(BaseSettings):
    """How to reach the Kafka-protocol broker."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # TLS (SSL, SASL_SSL): the CA that signed the brokers' certificates (default: the system's
    # trust store), and a client certificate and key (PEM) for brokers that ask for one.
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    # "https" checks the broker's host name against its certificate (librdkafka's default);
    # "none" skips that check, for certificates that do not carry the names clients use.
    ssl_endpoint_identification_algorithm: Literal["https", "none"] = "https"
    # Group membership: a dead member's partitions move after this long. librdkafka's 45 s
    # default makes failover (and a first join) slow; 10 s is a common production value.
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # Latency against broker work (README, Performance: measured both ways). A producer waits
    # up to linger_ms to batch records into one request; a consumer's fetch waits at the broker
    # up to fetch_wait_max_ms when there is nothing to return (a record that arrives answers it
    # at once), so a longer wait costs no latency but fewer empty fetches.
    linger_ms: float = Field(default=2.0, ge=0, le=1_000)
    fetch_wait_max_ms: int = Field(default=10, ge=0, le=10_000)

    def as_librdkafka_dict(self) -> dict[str, str | int | float | bool]:
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in {"SSL", "SASL_SSL"}:
            conf["ssl.endpoint.identification.algorithm"] = self.ssl_endpoint_identification_algorithm
            for key, path in (
                ("ssl.ca.location", self.ssl_ca_location),
                ("ssl.certificate.location", self.ssl_certificate_location),
                ("ssl.key.location", self.ssl_key_location),
            ):
                if path is not None:
                    conf[key] = str(path)
            if self.ssl_key_password:
                conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        # At start-up, not at the first connection: librdkafka would only log and retry.
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        tls = self.security_protocol in {"SSL", "SASL_SSL"}
        sasl = self.security_protocol.startswith("SASL_")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together")
        if not tls and (self.ssl_ca_location or self.ssl_certificate_location):
            raise ValueError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                "does not use TLS: set SSL or SASL_SSL"
            )
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(
                f"KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} "
                "does not use SASL: set SASL_SSL (or SASL_PLAINTEXT)"
            )
        return self


# The instrument master's topic: small, and read whole by every reader, in one ordered log.
INSTRUMENTS_PARTITIONS = 1


class TopicSettings(BaseSettings):
    """Topic names and shape. The DLQ of the raw topic is always `<raw>.dlq`."""

    model_config = SettingsConfigDict(env_prefix="TAPEWIRE_TOPIC_", frozen=True, extra="ignore")

    raw: str = "tt_raw_data"
    processed: str = "tt_processed_data"
    # The processor's changelog: the latest state per instrument, compacted; what a processor
    # taking over a partition restores from.
    processor_state: str = "tt_processor_state"
    # Price alerts: commands from dashboard_api (key: instrument, co-partitioned with raw so
    # that the processor owning an instrument's ticks owns its alerts), the processor's alert
    # books (compacted, like the state changelog) and the alert events (key: user id).
    commands: str = "tt_commands"
    processor_alerts: str = "tt_processor_alerts"
    alert_events: str = "tt_alert_events"
    # The instrument master (tapewire/reference): the latest entry per symbol, compacted.
    instruments: str = "tt_instruments"
    partitions: int = Field(default=6, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    # How many replicas must have a record before the broker acknowledges it (acks=all): 0
    # picks 2 when there are 3 or more replicas (one broker may be down and nothing
    # acknowledged is on a single disk), else 1.
    min_insync_replicas: int = Field(default=0, ge=0)

    @property
    def effective_min_insync_replicas(self) -> int:
        if self.min_insync_replicas:
            return min(self.min_insync_replicas, self.replication_factor)
        return 2 if self.replication_factor >= 3 else 1

    @property
    def raw_dlq(self) -> str:
        return f"{self.raw}.dlq"

    def all_topics(self) -> dict[str, int]:
        """Every topic tapewire uses, with its partition count. All but the master have the same
        count: the processor reads raw and commands partition p together and writes p's output
        to p. The master is small and every reader takes all of it: one partition."""
        names = (
            self.raw,
            self.processed,
            self.processor_state,
            self.raw_dlq,
            self.commands,
            self.processor_alerts,
            self.alert_events,
        )
        return {**dict.fromkeys(names, self.partitions), self.instruments: INSTRUMENTS_PARTITIONS}

    @property
    def compacted(self) -> tuple[str, ...]:
        """The changelogs and the master: only the latest record per key matters."""
        return (self.processor_state, self.processor_alerts, self.instruments)


# Compaction keeps the changelog to about one record per instrument; small segments let the
# cleaner reach recent records sooner, which bounds how much a restore has to read.
CHANGELOG_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "300000",
    "min.cleanable.dirty.ratio": "0.1",
}


class RedisSettings(BaseSettings):
    """Where the cache lives and how its keys and channels are named."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", frozen=True, extra="ignore")

    url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    # Every key and channel starts with this, so several deployments (or tests) share a server.
    key_prefix: str = "tt:"
    updates_channel: str = "tt_updates"
    # Alert events for user u are published on `<alerts_channel>:<u>`.
    alerts_channel: str = "tt_alerts"
    # Updates kept per instrument for clients that resume (Redis stream, trimmed approximately).
    history_length: int = Field(default=1000, ge=0, le=1_000_000)
    # A Redis Cluster: `url` names any one node (the client finds the others); every key and
    # channel of an instrument or a user is hash-tagged onto one slot and updates go over
    # sharded pub/sub (tapewire/keys.py). The database number must be 0.
    cluster: bool = False
    # More nodes of the cluster to find it from (`host:port`, comma-separated), reached with the
    # URL's scheme, login and options: a service then starts while the URL's node is down.
    startup_nodes: Annotated[tuple[tuple[str, int], ...], NoDecode] = ()

    @field_validator("startup_nodes", mode="before")
    @classmethod
    def _split_nodes(cls, value: object) -> object:
        return host_ports(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _startup_nodes_of_a_cluster(self) -> RedisSettings:
        if self.startup_nodes and not self.cluster:
            raise ValueError("REDIS_STARTUP_NODES needs REDIS_CLUSTER=true: one server has no other nodes")
        return self

    @model_validator(mode="after")
    def _names_have_no_hash_tag(self) -> RedisSettings:
        # On a cluster the key names' only braces must be tapewire's own hash tags.
        names = {"key_prefix": self.key_prefix, "updates_channel": self.updates_channel}
        names["alerts_channel"] = self.alerts_channel
        braced = [name for name, value in names.items() if "{" in value or "}" in value]
        if self.cluster and braced:
            raise ValueError(f"REDIS_CLUSTER: {', '.join(braced).upper()} must not contain {{ or }}")
        return self


def host_ports(text: str) -> tuple[tuple[str, int], ...]:
    """REDIS_STARTUP_NODES' nodes: `host:port` (or `[v6 address]:port`), comma-separated."""
    return tuple(_host_port(item.strip()) for item in text.split(",") if item.strip())


def _host_port(item: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`."""
    host, _, port = item.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"REDIS_STARTUP_NODES: {item!r} is not host:port")
    return host, int(port)


class PostgresSettings(BaseSettings):
    """Where history and durable state live."""

    model_config = SettingsConfigDict(
        env_prefix="DATABASE_", frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True
    )

    url: SecretStr = SecretStr("postgresql://tapewire@127.0.0.1:15432/tapewire")
    schema_name: str = Field(default="tapewire", alias="TAPEWIRE_PG_SCHEMA")

    @field_validator("schema_name")
    @classmethod
    def _schema_is_an_identifier(cls, value: str) -> str:
        # The schema is spliced into SQL (search_path), so it must be a plain identifier.
        if not _SAFE_IDENTIFIER.match(value):
            raise ValueError("TAPEWIRE_PG_SCHEMA must match [a-z_][a-z0-9_]{0,62}")
        return value


class LogSettings(BaseSettings):
    """Structured logs: one JSON object per line on stderr."""

    model_config = SettingsConfigDict(env_prefix="TAPEWIRE_", frozen=True, extra="ignore")

    log_level: str = "INFO"
