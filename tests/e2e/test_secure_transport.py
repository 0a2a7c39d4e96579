"""tapewire over TLS against real servers started here with certificates made at test time
(tests/tls.py): Kafka on a SASL_SSL listener with SCRAM users, Redis TLS-only with an ACL user
limited to tapewire's keys and channels, PostgreSQL taking only TLS with a password, gRPC over
TLS. Each is reached with nothing but the settings a deployment would set, and each refuses
what it should: a wrong password, a certificate from another CA, a plaintext client. Then the
whole suite runs with all of it on, and auth too, and a client gets live prices and bars.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import psycopg
import pytest
import redis
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from websockets.sync.client import connect as ws_connect

from services.cache_updater.redis_memory import USED, RedisMemoryCollector
from services.dashboard_api.live.pubsub import PubSubConnector
from services.dashboard_api.live.relay import Relay, confirmed
from services.dashboard_api.metrics import DashboardApiMetrics
from services.ingester.sources.simulator import instrument_names
from tapewire.grpc_server import GrpcServerOptions, TlsIdentity, start_grpc_server
from tapewire.keys import RedisKeys
from tapewire.settings import KafkaSettings, RedisSettings
from tests.faults.private_servers import (
    SaslSsl,
    TlsPostgres,
    free_ports,
    kafka_runtime_missing,
    private_kafka,
)
from tests.integration.dashboard_support import Cache
from tests.support import answers, stop_and_show, wait_for
from tests.tls import CertificateAuthority
from tools.suite import Suite, prepare

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PASSWORDS = {"broker": uuid.uuid4().hex, "tapewire": uuid.uuid4().hex}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("other-ca"), "someone else's CA")


# --- Kafka: SASL_SSL with SCRAM-SHA-256 -------------------------------------------------------


@pytest.fixture(scope="module")
def secure_broker(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if (missing := kafka_runtime_missing()) is not None:
        pytest.fail(missing)
    directory = tmp_path_factory.mktemp("kafka-sasl-ssl")
    keystore = ca.issue("kafka").pem_bundle(directory / "kafka.pem")
    with private_kafka(directory, SaslSsl(keystore, ca.certificate, PASSWORDS)) as broker:
        yield broker.bootstrap_servers


def kafka_settings(bootstrap: str, ca_file: Path, password: str = PASSWORDS["tapewire"]) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="tapewire",
        sasl_password=SecretStr(password),
        ssl_ca_location=ca_file,
    )


def test_kafka_over_sasl_ssl_carries_a_transaction_end_to_end(
    secure_broker: str, ca: CertificateAuthority
) -> None:
    conf = kafka_settings(secure_broker, ca.certificate).as_librdkafka_dict()
    topic = f"tls_{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)  # kept: a discarded client destroys its handle before the future
    [future] = admin.create_topics([NewTopic(topic, 1, 1)]).values()
    future.result(30)
    producer = Producer({**conf, "transactional.id": f"tls-test-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"AAPL", value=str(i).encode())
    producer.commit_transaction(30)
    consumer = Consumer(
        {**conf, "group.id": topic, "auto.offset.reset": "earliest", "isolation.level": "read_committed"}
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    assert values == [str(i).encode() for i in range(10)]


@pytest.mark.parametrize("wrong", ["password", "ca"])
def test_kafka_refuses_a_wrong_password_and_a_broker_certificate_from_another_ca(
    secure_broker: str, ca: CertificateAuthority, other_ca: CertificateAuthority, wrong: str
) -> None:
    settings = (
        kafka_settings(secure_broker, ca.certificate, password="not-the-password")
        if wrong == "password"
        else kafka_settings(secure_broker, other_ca.certificate)
    )
    errors: list[str] = []
    conf = {**settings.as_librdkafka_dict(), "error_cb": lambda error: errors.append(str(error))}
    producer = Producer(conf)  # error_cb is served by poll(), which an AdminClient lacks
    with pytest.raises(KafkaException):
        producer.list_topics(timeout=5)
    expected = "Authentication failed" if wrong == "password" else "certificate verify failed"
    deadline = time.monotonic() + 15
    while not any(expected in error for error in errors) and time.monotonic() < deadline:
        producer.poll(0.2)
    assert any(expected in error for error in errors), errors


# --- Redis: TLS only, an ACL user limited to tapewire's keys and channels ---------------------

REDIS_USER = "tapewire"
REDIS_PASSWORD = uuid.uuid4().hex


@pytest.fixture(scope="module")
def tls_redis(ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """redis-server with no plaintext port, a TLS port and two users: `default` disabled, and
    tapewire's, which may touch only `tt-tls:*` keys and `tt-tls*` channels and no admin command."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing (python3 -m tools.devstack up installs it)")
    directory = tmp_path_factory.mktemp("redis-tls")
    server = ca.issue("redis")
    (port,) = free_ports(1)
    acl = f"user {REDIS_USER} on >{REDIS_PASSWORD} ~tt-tls:* &tt-tls* +@all -@admin -@dangerous +info"
    (directory / "users.acl").write_text(f"user default off\n{acl}\n")
    log = (directory / "redis.log").open("wb")
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(server.certificate), "--tls-key-file", str(server.key),
         "--tls-ca-cert-file", str(ca.certificate), "--tls-auth-clients", "no",
         "--aclfile", str(directory / "users.acl"), "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(tls_url(port, ca.certificate))
        wait_for(lambda: _pings(client), 20, "the TLS Redis")
        yield port
    finally:
        process.kill()
        process.wait()
        log.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def tls_url(port: int, ca_file: Path, password: str = REDIS_PASSWORD) -> str:
    return f"rediss://{REDIS_USER}:{password}@127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"


def test_redis_over_tls_carries_the_cache_updater_script_and_the_relay(
    tls_redis: int, ca: CertificateAuthority
) -> None:
    url = tls_url(tls_redis, ca.certificate)
    settings = RedisSettings(url=SecretStr(url), key_prefix="tt-tls:", updates_channel="tt-tls-updates")
    client = redis.Redis.from_url(url)
    cache = Cache(client, settings)
    metrics = DashboardApiMetrics()

    class Watcher:
        def __init__(self) -> None:
            self.versions: list[int] = []

        def deliver(self, delta: object) -> bool:
            self.versions.append(delta.version)  # type: ignore[attr-defined]
            return True

        def deliver_alert(self, event: object) -> bool:
            return True

        def resync(self) -> bool:
            return True

    async def relay_over_tls() -> list[int]:
        relay = Relay(PubSubConnector(url), RedisKeys.from_settings(settings), metrics, max_backoff_s=0.5)
        relay.start()
        watcher = Watcher()
        try:
            await asyncio.wait_for(confirmed(relay.watch(watcher, ["AAPL"])), 10)
            for version in (1, 2, 3):
                assert cache.put("AAPL", version)  # the script cache_updater runs, over TLS
            deadline = time.monotonic() + 10
            while watcher.versions != [1, 2, 3] and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            await relay.stop()
        return watcher.versions

    assert asyncio.run(relay_over_tls()) == [1, 2, 3]
    # The Redis memory gauge reads INFO over the same connection settings.
    samples = {s.name: s.value for f in RedisMemoryCollector(client).collect() for s in f.samples}
    assert samples[USED] > 0


def test_redis_refuses_what_the_acl_and_tls_do_not_allow(
    tls_redis: int, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    client = redis.Redis.from_url(tls_url(tls_redis, ca.certificate))
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("not-tapewire:key", b"x")  # outside tapewire's key pattern
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()  # an admin command
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(tls_url(tls_redis, ca.certificate, password="wrong")).ping()
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(tls_url(tls_redis, other_ca.certificate)).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=tls_redis, socket_timeout=2).ping()  # plaintext


# --- gRPC over TLS -------------------------------------------------------------------------------


def test_grpc_over_tls_serves_a_client_that_trusts_the_ca_only(
    ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    issued = ca.issue("grpc")
    identity = TlsIdentity.from_files(issued.certificate, issued.key, "TEST_GRPC_")
    assert identity is not None

    async def check() -> tuple[int, str, str]:
        server = await start_grpc_server(GrpcServerOptions(host="127.0.0.1", port=0, tls=identity), [])
        target = f"localhost:{server.port}"
        try:
            trusted = grpc.ssl_channel_credentials(ca.certificate.read_bytes())
            async with grpc.aio.secure_channel(target, trusted) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            failures = []
            untrusted = grpc.ssl_channel_credentials(other_ca.certificate.read_bytes())
            for channel in (grpc.aio.secure_channel(target, untrusted), grpc.aio.insecure_channel(target)):
                async with channel:
                    try:
                        await health_pb2_grpc.HealthStub(channel).Check(
                            health_pb2.HealthCheckRequest(), timeout=5
                        )
                        failures.append("answered")
                    except grpc.aio.AioRpcError as exc:
                        failures.append(exc.code().name)
            return reply.status, failures[0], failures[1]
        finally:
            await server.stop(0)

    status, untrusted, plaintext = asyncio.run(check())
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert (untrusted, plaintext) == ("UNAVAILABLE", "UNAVAILABLE")


def test_grpc_tls_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("not a certificate")
    with pytest.raises(ValueError, match="X_TLS_CERT_FILE and X_TLS_KEY_FILE go together"):
        TlsIdentity.from_files(cert, None, "X_")
    with pytest.raises(ValueError, match="cannot read"):
        TlsIdentity.from_files(cert, tmp_path / "missing.pem", "X_")
    with pytest.raises(ValueError, match="must be PEM"):
        TlsIdentity.from_files(cert, cert, "X_")


# --- PostgreSQL: TLS only, sslmode=verify-full ---------------------------------------------------

PG_PASSWORD = uuid.uuid4().hex


@pytest.fixture(scope="module")
def tls_postgres(ca: CertificateAuthority) -> Iterator[TlsPostgres]:
    issued = ca.issue("postgres")
    server = TlsPostgres(issued.certificate, issued.key, PG_PASSWORD)
    try:
        yield server.start()
    finally:
        server.stop()


def test_postgres_with_verify_full_and_the_refusals(
    tls_postgres: TlsPostgres, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    with psycopg.connect(tls_postgres.url(ca.certificate), connect_timeout=10) as conn:
        (ssl_on,) = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() or (
            None,
        )
        assert ssl_on is True
    refused = {
        "another CA": tls_postgres.url(other_ca.certificate),
        "a wrong password": tls_postgres.url(ca.certificate, password="wrong"),
        "plaintext": tls_postgres.url(ca.certificate, sslmode="disable"),
    }
    for what, url in refused.items():
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=10).close()
            pytest.fail(f"connected with {what}")


# --- The whole suite, with all of it on ------------------------------------------------------------

AUTH_SECRET = "tls-e2e-" + uuid.uuid4().hex + uuid.uuid4().hex
INSTRUMENTS = instrument_names(4)


def test_the_suite_runs_over_tls_everywhere_with_auth_on(
    secure_broker: str,
    tls_redis: int,
    tls_postgres: TlsPostgres,
    ca: CertificateAuthority,
    env_for_services: Callable[..., dict[str, str]],
    tmp_path: Path,
) -> None:
    unique = uuid.uuid4().hex[:8]
    grpc_identity = ca.issue("services")
    api_port, api_grpc_port, ingest_grpc_port = free_ports(3)
    env = env_for_services(
        KAFKA_BOOTSTRAP_SERVERS=secure_broker,
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        KAFKA_SASL_USERNAME="tapewire",
        KAFKA_SASL_PASSWORD=PASSWORDS["tapewire"],
        KAFKA_SSL_CA_LOCATION=str(ca.certificate),
        REDIS_URL=tls_url(tls_redis, ca.certificate),
        REDIS_KEY_PREFIX=f"tt-tls:{unique}:",
        REDIS_UPDATES_CHANNEL=f"tt-tls-{unique}-updates",
        REDIS_ALERTS_CHANNEL=f"tt-tls-{unique}-alerts",
        DATABASE_URL=tls_postgres.url(ca.certificate),
        AUTH_HS256_SECRET=AUTH_SECRET,
        DASHBOARD_API_PORT=str(api_port),
        DASHBOARD_API_GRPC_PORT=str(api_grpc_port),
        DASHBOARD_API_GRPC_TLS_CERT_FILE=str(grpc_identity.certificate),
        DASHBOARD_API_GRPC_TLS_KEY_FILE=str(grpc_identity.key),
        INGESTER_GRPC_PORT=str(ingest_grpc_port),
        INGESTER_GRPC_TLS_CERT_FILE=str(grpc_identity.certificate),
        INGESTER_GRPC_TLS_KEY_FILE=str(grpc_identity.key),
        INGESTER_INSTRUMENTS=str(len(INSTRUMENTS)),
        INGESTER_RATE="50",
    )
    prepare(env)  # topics over SASL_SSL, migrations over TLS
    suite = Suite(env=env, log_dir=tmp_path / "logs").start()
    try:
        wait_for(
            lambda: answers(f"http://127.0.0.1:{api_port}/readyz"),
            60,
            "dashboard_api's /readyz over TLS Redis",
        )
        token = jwt.encode({"sub": "desk-1", "exp": int(time.time()) + 600}, AUTH_SECRET, algorithm="HS256")
        with ws_connect(f"ws://127.0.0.1:{api_port}/ws?token={token}", open_timeout=10) as ws:
            assert json.loads(ws.recv(10))["type"] == "welcome"
            ws.send(json.dumps({"type": "subscribe", "instruments": INSTRUMENTS}))
            updates = 0
            deadline = time.monotonic() + 90
            while updates < 20 and time.monotonic() < deadline:
                if json.loads(ws.recv(30))["type"] == "update":
                    updates += 1
            assert updates == 20, "no live updates through Kafka and Redis over TLS"

        def bars() -> list[Any]:
            reply = httpx.get(
                f"http://127.0.0.1:{api_port}/api/bars",
                params={"instrument": INSTRUMENTS[0], "interval": "1s", "limit": 5},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            return list(reply.json()["bars"]) if reply.status_code == 200 else []

        wait_for(bars, 60, "bars written by history_writer and read by dashboard_api, both over TLS")
        assert httpx.get(f"http://127.0.0.1:{api_port}/api/instruments", timeout=5).status_code == 401

        async def grpc_health(port: int) -> int:
            trusted = grpc.ssl_channel_credentials(ca.certificate.read_bytes())
            async with grpc.aio.secure_channel(f"localhost:{port}", trusted) as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            return int(reply.status)

        for port in (api_grpc_port, ingest_grpc_port):
            assert asyncio.run(grpc_health(port)) == health_pb2.HealthCheckResponse.SERVING
    finally:
        codes = stop_and_show(suite)
    assert codes == dict.fromkeys(suite.processes, 0)
