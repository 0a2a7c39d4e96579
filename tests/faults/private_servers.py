"""Servers of a test's own that it may stop, kill and start again: a private Kafka broker, and
a PostgreSQL that takes only TLS connections.

The broker is the one `tools/devstack` runs (the same jars, the same server.properties, the
same heap), on two free ports and a data directory of the test's own, so stopping it touches
no other test and no running `make run`. Its data survives `stop()`/`kill()` and `start()`:
the topics, the records and the producers' state come back, as after a real broker restart.
Given a `SaslSsl`, its client listener is SASL_SSL with SCRAM users instead of PLAINTEXT.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from confluent_kafka.admin import AdminClient

from tests.support import wait_for
from tools.devstack import (
    KAFKA_LIBS,
    LOG4J2_PROPERTIES,
    cluster_node_properties,
    kafka_format_command,
    kafka_java,
    kafka_new_cluster_id,
    kafka_properties,
    kafka_ready,
    kafka_server_command,
    override,
)

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that nothing listens on right now."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def kafka_runtime_missing() -> str | None:
    """Why a private broker cannot run here (no java, no jars), or None."""
    if shutil.which("java") is None:
        return "java is not installed"
    if not list(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        return "the Kafka jars are not in .local/kafka/libs (run `python3 -m tools.devstack up`)"
    return None


@dataclass(frozen=True)
class SaslSsl:
    """A SASL_SSL client listener: the broker's key and certificate in one PEM file, the CA
    that signed it, and the SCRAM-SHA-256 users (name -> password) stored at format time."""

    keystore: Path
    ca: Path
    users: Mapping[str, str]
    mechanism: str = "SCRAM-SHA-256"

    def scram(self) -> tuple[str, ...]:
        return tuple(f"{self.mechanism}=[name={name},password={pw}]" for name, pw in self.users.items())

    def properties(self, port: int, controller_port: int, inter_broker_user: str) -> dict[str, str]:
        """What changes in devstack's server.properties: the client listener and its security."""
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{inter_broker_user}" password="{self.users[inter_broker_user]}";'
        )
        return {
            "listeners": f"SASL_SSL://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
            "advertised.listeners": f"SASL_SSL://{HOST}:{port}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": self.mechanism,
            "sasl.mechanism.inter.broker.protocol": self.mechanism,
            f"listener.name.sasl_ssl.{self.mechanism.lower()}.sasl.jaas.config": login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
            "ssl.client.auth": "none",
        }


class PrivateKafka:
    """A single-node KRaft broker (broker and controller in one process) in `directory`."""

    def __init__(self, directory: Path, sasl_ssl: SaslSsl | None = None) -> None:
        self.port, self.controller_port = free_ports(2)
        self.sasl_ssl = sasl_ssl
        self.directory = directory
        self._config = directory / "server.properties"
        self._log4j = directory / "log4j2.properties"
        self._data = directory / "data"
        self._starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """This run's log (one file per start, so that readiness reads only the current run)."""
        return self.directory / f"kafka-{self._starts}.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> PrivateKafka:
        """Start the broker (formatting its storage the first time); return once it serves."""
        assert not self.running, "the broker is already running"
        if not (self._data / "meta.properties").exists():
            self._format()
        self._starts += 1
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            kafka_server_command(self._config, self._log4j),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, START_TIMEOUT_S, f"the private Kafka broker on port {self.port}", 0.25)
        return self

    def stop(self) -> int:
        """SIGTERM (a controlled shutdown) and wait; SIGKILL if it takes too long. The exit code."""
        return self._end(signal.SIGTERM, STOP_TIMEOUT_S)

    def kill(self) -> int:
        """SIGKILL: the broker dies without flushing or telling anyone."""
        return self._end(signal.SIGKILL, STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _format(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log4j.write_text(LOG4J2_PROPERTIES)
        properties = kafka_properties(self.port, self.controller_port, self._data)
        scram: tuple[str, ...] = ()
        if self.sasl_ssl is not None:
            user = next(iter(self.sasl_ssl.users))  # the first user is the broker's own
            properties = override(properties, self.sasl_ssl.properties(self.port, self.controller_port, user))
            scram = self.sasl_ssl.scram()
        self._config.write_text(properties)
        formatted = subprocess.run(
            kafka_format_command(self._config, kafka_new_cluster_id(), self._log4j, scram),
            cwd=self.directory,
            capture_output=True,
            text=True,
        )
        assert formatted.returncode == 0, (
            f"kafka-storage format failed:\n{formatted.stdout}{formatted.stderr}"
        )

    def _ready(self) -> bool:
        assert self.running, f"the private Kafka broker exited during start-up\n{self.log_tail()}"
        return kafka_ready(self.port, self.log_path)

    def _end(self, sig: signal.Signals, timeout_s: float) -> int:
        process, self._process = self._process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


@contextmanager
def private_kafka(directory: Path, sasl_ssl: SaslSsl | None = None) -> Iterator[PrivateKafka]:
    """A started `PrivateKafka` in `directory`, killed on exit (its data is left for inspection)."""
    broker = PrivateKafka(directory, sasl_ssl)
    try:
        yield broker.start()
    finally:
        broker.kill()


class PrivateKafkaCluster:
    """`size` KRaft nodes in `directory`, each a broker and a controller (a static quorum of
    `size` voters), configured for what a production cluster promises: internal topics with 3
    replicas, and 2 of them in sync before a record is acknowledged. Any node can be killed,
    restarted, or restarted with its disk wiped."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        ports = free_ports(2 * size)
        self.nodes = tuple(range(1, size + 1))
        self.ports = dict(zip(self.nodes, ports[:size], strict=True))
        self.controller_ports = dict(zip(self.nodes, ports[size:], strict=True))
        self.directory = directory
        self.cluster_id = kafka_new_cluster_id()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._logs: dict[int, IO[bytes]] = {}
        self._starts = dict.fromkeys(self.nodes, 0)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{HOST}:{self.ports[n]}" for n in self.nodes)

    def log_path(self, node: int) -> Path:
        return self.directory / f"node-{node}" / f"kafka-{self._starts[node]}.log"

    def running(self, node: int) -> bool:
        process = self._processes.get(node)
        return process is not None and process.poll() is None

    def start(self) -> PrivateKafkaCluster:
        """Start every node, then wait for all: none finishes starting before a quorum forms."""
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self._wait_ready(node)
        return self

    def start_node(self, node: int, wait: bool = True) -> None:
        assert not self.running(node), f"node {node} is already running"
        folder = self.directory / f"node-{node}"
        if not (folder / "data" / "meta.properties").exists():
            self._format(node)
        self._starts[node] += 1
        self._logs[node] = self.log_path(node).open("ab")
        self._processes[node] = subprocess.Popen(
            kafka_server_command(folder / "server.properties", folder / "log4j2.properties"),
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=self._logs[node],
            stderr=subprocess.STDOUT,
        )
        if wait:
            self._wait_ready(node)

    def kill(self, node: int) -> None:
        """SIGKILL: the node dies without flushing or telling anyone."""
        process = self._processes.pop(node, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
        log = self._logs.pop(node, None)
        if log is not None:
            log.close()

    def wipe(self, node: int) -> None:
        """Delete a stopped node's disk (metadata and partitions): it is formatted again, into
        the same cluster, when it starts."""
        assert not self.running(node), "wipe a stopped node"
        shutil.rmtree(self.directory / f"node-{node}" / "data")

    def stop_all(self) -> None:
        for node in self.nodes:
            self.kill(node)

    def leader(self, topic: str, partition: int) -> int:
        metadata = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)

    def in_sync(self, node: int, topics: list[str]) -> bool:
        """Whether `node` is back in the in-sync replicas of every partition of `topics` it holds."""
        metadata = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(timeout=10)
        partitions = [p for t in topics for p in metadata.topics[t].partitions.values()]
        return bool(partitions) and all(node in p.isrs for p in partitions if node in p.replicas)

    def active_controller(self) -> int:
        """The quorum's leader, as `kafka-metadata-quorum describe --status` reports it."""
        folder = self.directory / f"node-{self.nodes[0]}"
        command = kafka_java(
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server", self.bootstrap_servers, "describe", "--status",
            log4j_config=folder / "log4j2.properties",
        )  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        found = re.search(r"LeaderId:\s+(\d+)", out.stdout)
        assert found, f"no LeaderId in:\n{out.stdout}{out.stderr}"
        return int(found.group(1))

    def log_tail(self, node: int, lines: int = 30) -> str:
        path = self.log_path(node)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _format(self, node: int) -> None:
        folder = self.directory / f"node-{node}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        ports = {n: (self.ports[n], self.controller_ports[n]) for n in self.nodes}
        (folder / "server.properties").write_text(cluster_node_properties(node, ports, folder / "data"))
        formatted = subprocess.run(
            kafka_format_command(
                folder / "server.properties", self.cluster_id, folder / "log4j2.properties", standalone=False
            ),
            cwd=folder,
            capture_output=True,
            text=True,
        )
        assert formatted.returncode == 0, (
            f"kafka-storage format failed:\n{formatted.stdout}{formatted.stderr}"
        )

    def _wait_ready(self, node: int) -> None:
        def ready() -> bool:
            assert self.running(node), f"Kafka node {node} exited during start-up\n{self.log_tail(node)}"
            return kafka_ready(self.ports[node], self.log_path(node))

        wait_for(ready, START_TIMEOUT_S, f"Kafka node {node} on port {self.ports[node]}", 0.25)


@contextmanager
def private_kafka_cluster(directory: Path, size: int = 3) -> Iterator[PrivateKafkaCluster]:
    """A started `PrivateKafkaCluster`, killed on exit (its data is left for inspection)."""
    cluster = PrivateKafkaCluster(directory, size)
    try:
        yield cluster.start()
    finally:
        cluster.stop_all()


class TlsPostgres:
    """A PostgreSQL of its own that accepts TCP connections only over TLS, with a password
    (scram-sha-256), for the superuser `tapewire`: what `sslmode=verify-full` is tested against.

    Its folder is under .local/ (devstack makes that reachable by the `postgres` user, which the
    server runs as when we are root; pytest's own temporary folders are not), removed on `stop`.
    """

    def __init__(self, certificate: Path, key: Path, password: str) -> None:
        from tools.devstack.paths import LOCAL

        (self.port,) = free_ports(1)
        self.directory = LOCAL / f"tls-pg-{self.port}"
        self._certificate, self._key, self._password = certificate, key, password
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, ca: Path, sslmode: str = "verify-full", password: str | None = None) -> str:
        secret = self._password if password is None else password
        return (
            f"postgresql://tapewire:{secret}@127.0.0.1:{self.port}/postgres"
            f"?sslmode={sslmode}&sslrootcert={ca}"
        )

    def start(self) -> TlsPostgres:
        from tools.devstack.postgres import as_server_owner, server_binaries

        bindir = server_binaries()
        data, tls = self.directory / "data", self.directory / "tls"
        tls.mkdir(parents=True)
        (self.directory / "pw").write_text(self._password)
        shutil.copy(self._certificate, tls / "server.crt")
        shutil.copy(self._key, tls / "server.key")
        (tls / "server.key").chmod(0o600)
        _give_to_server_owner(self.directory)
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "tapewire",
                  "--pwfile", str(self.directory / "pw"), "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"]  # fmt: skip
        done = subprocess.run(as_server_owner(initdb), capture_output=True, text=True)
        assert done.returncode == 0, f"initdb failed:\n{done.stdout}{done.stderr}"
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
        )
        server = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                  "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.directory}",
                  "-c", "ssl=on", "-c", f"ssl_cert_file={tls / 'server.crt'}",
                  "-c", f"ssl_key_file={tls / 'server.key'}"]  # fmt: skip
        with (self.directory / "postgres.log").open("ab") as log:  # the child keeps its own copy
            self._process = subprocess.Popen(as_server_owner(server), stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, START_TIMEOUT_S, f"the TLS PostgreSQL on port {self.port}", 0.2)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            # SIGINT is a fast shutdown; sent to the postmaster itself, since runuser (root's
            # wrapper) does not pass it on.
            pid_file = self.directory / "data" / "postmaster.pid"
            postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else self._process.pid
            os.kill(postmaster, signal.SIGINT)
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _ready(self) -> bool:
        assert self._process is not None and self._process.poll() is None, (
            f"the TLS PostgreSQL exited:\n{(self.directory / 'postgres.log').read_text(errors='replace')}"
        )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return (
                sock.connect_ex((HOST, self.port)) == 0
                and (self.directory / "data" / "postmaster.pid").exists()
            )


def _give_to_server_owner(directory: Path) -> None:
    """As root, hand `directory` (recursively) to the `postgres` user the server runs as."""
    if os.geteuid() != 0:
        return
    owner = pwd.getpwnam("postgres")
    for path in (directory, *directory.rglob("*")):
        os.chown(path, owner.pw_uid, owner.pw_gid)
