"""Where devstack keeps things, and the addresses of its servers.

Data, logs and pid files live under ``.local/`` at the repository root. Ports can be moved with
``DEVSTACK_KAFKA_PORT``, ``DEVSTACK_REDIS_PORT`` and ``DEVSTACK_PG_PORT``; a server is external
when its variable names something other than the local server's own address.
``DEVSTACK_KAFKA_BROKERS`` (default 1) makes Kafka a cluster of that many KRaft nodes, node n
on the two ports 2(n - 1) above node 1's. ``DEVSTACK_REDIS_CLUSTER=1`` (or ``true``) makes Redis
a Redis Cluster of 3 masters and 3 replicas on ``DEVSTACK_REDIS_PORT`` and the 5 ports above it
(each node's cluster bus 10000 higher); ``REDIS_URL`` still names node 1, from which a cluster
client discovers the others, and ``REDIS_CLUSTER=true`` tells tapewire that it is one.
"""

from __future__ import annotations

import os
from pathlib import Path

from tools.devstack.errors import DevstackError

ROOT = Path(__file__).resolve().parent.parent.parent
LOCAL = ROOT / ".local"
RUN_DIR = LOCAL / "run"
LOG_DIR = LOCAL / "logs"
LOCK_FILE = RUN_DIR / "devstack.lock"

KAFKA_POM = ROOT / "tools" / "kafka-runtime" / "pom.xml"
KAFKA_DIR = LOCAL / "kafka"
KAFKA_LIBS = KAFKA_DIR / "libs"
KAFKA_LIBS_MARKER = KAFKA_LIBS / ".complete"
KAFKA_DATA = KAFKA_DIR / "data"
KAFKA_CONFIG = KAFKA_DIR / "server.properties"
KAFKA_LOG4J = KAFKA_DIR / "log4j2.properties"
KAFKA_FORMAT_MARKER = KAFKA_DIR / "formatted-controller-port"

REDIS_DIR = LOCAL / "redis"

PG_DIR = LOCAL / "pg"
PG_DATA = PG_DIR / "data"
PG_SOCKET_DIR = RUN_DIR / "pg"
PG_USER = "tapewire"
PG_DB = "tapewire"

HOST = "127.0.0.1"
DEFAULT_PORTS = {"kafka": 19092, "redis": 16379, "postgres": 15432}
PORT_ENV = {
    "kafka": "DEVSTACK_KAFKA_PORT",
    "redis": "DEVSTACK_REDIS_PORT",
    "postgres": "DEVSTACK_PG_PORT",
}
URL_ENV = {
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "redis": "REDIS_URL",
    "postgres": "DATABASE_URL",
}
SERVICES = ("kafka", "redis", "postgres")
KAFKA_BROKERS_ENV = "DEVSTACK_KAFKA_BROKERS"
MAX_KAFKA_BROKERS = 9
REDIS_CLUSTER_ENV = "DEVSTACK_REDIS_CLUSTER"
REDIS_CLUSTER_NODES = 6  # 3 masters, each with 1 replica: the smallest cluster that fails over
REDIS_BUS_OFFSET = 10000  # Redis's default: a node's cluster bus listens 10000 above its client port


def kafka_brokers() -> int:
    """How many Kafka nodes devstack runs (``DEVSTACK_KAFKA_BROKERS``, default 1)."""
    raw = os.environ.get(KAFKA_BROKERS_ENV, "").strip()
    if not raw:
        return 1
    try:
        value = int(raw)
    except ValueError:
        raise DevstackError(f"{KAFKA_BROKERS_ENV}={raw!r} is not a number") from None
    if not 1 <= value <= MAX_KAFKA_BROKERS:
        raise DevstackError(f"{KAFKA_BROKERS_ENV}={raw!r}: between 1 and {MAX_KAFKA_BROKERS}")
    return value


def kafka_node_ports(brokers: int | None = None) -> dict[int, tuple[int, int]]:
    """Node id -> (client port, controller port): node 1 on ``DEVSTACK_KAFKA_PORT`` and the next
    port, each further node two ports higher."""
    count = kafka_brokers() if brokers is None else brokers
    base = port("kafka")
    if base + 2 * count - 1 > 65535:
        raise DevstackError(f"{count} Kafka nodes from port {base} run past 65535: lower DEVSTACK_KAFKA_PORT")
    return {node: (base + 2 * (node - 1), base + 2 * (node - 1) + 1) for node in range(1, count + 1)}


def redis_cluster() -> bool:
    """Whether devstack's Redis is a cluster (``DEVSTACK_REDIS_CLUSTER``: 1 or true; default off)."""
    raw = os.environ.get(REDIS_CLUSTER_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise DevstackError(
        f"{REDIS_CLUSTER_ENV}={raw!r}: 1 or true for a cluster, 0 or false (the default) for none"
    )


def redis_node_ports(first_port: int | None = None) -> list[int]:
    """The client ports of a Redis cluster's nodes: ``first_port`` (default ``DEVSTACK_REDIS_PORT``)
    and the next five. Each node's cluster bus is 10000 higher, so that must fit too."""
    first = port("redis") if first_port is None else first_port
    last = first + REDIS_CLUSTER_NODES - 1
    if first < 1 or last + REDIS_BUS_OFFSET > 65535:
        raise DevstackError(
            f"a Redis cluster from port {first} needs ports up to {last} and its cluster bus up to "
            f"{last + REDIS_BUS_OFFSET}, past 65535: lower DEVSTACK_REDIS_PORT"
        )
    return list(range(first, last + 1))


def port(service: str) -> int:
    """The local port of ``service`` (``DEVSTACK_*_PORT`` or the default)."""
    raw = os.environ.get(PORT_ENV[service], "").strip()
    if not raw:
        return DEFAULT_PORTS[service]
    try:
        value = int(raw)
    except ValueError:
        raise DevstackError(f"{PORT_ENV[service]}={raw!r} is not a port number") from None
    if not 1 <= value <= 65535 or (service == "kafka" and value == 65535):
        raise DevstackError(f"{PORT_ENV[service]}={raw!r} is out of range")
    return value


def local_value(service: str) -> str:
    """The variable value that points at our own local server."""
    p = port(service)
    if service == "kafka":
        return ",".join(f"{HOST}:{client}" for client, _ in kafka_node_ports().values())
    if service == "redis":
        return f"redis://{HOST}:{p}/0"
    return f"postgresql://{PG_USER}@{HOST}:{p}/{PG_DB}"


def external_value(service: str) -> str | None:
    """The user's own server for ``service``, if the environment names one.

    A variable that already holds our local address (e.g. after
    ``eval "$(devstack up)"``) is not external: we still manage that server.
    """
    value = os.environ.get(URL_ENV[service], "").strip()
    if not value or value == local_value(service):
        return None
    return value


def env_vars() -> dict[str, str]:
    """The three variables ``up`` would give, without starting anything; with a local Kafka
    cluster also the replication factor its topics get (3, or as many nodes as there are), and
    with a local Redis cluster ``REDIS_CLUSTER=true`` (a plain client would get MOVED replies)
    and its other nodes as ``REDIS_STARTUP_NODES`` (a service starts while node 1 is down)."""
    values = {URL_ENV[s]: external_value(s) or local_value(s) for s in SERVICES}
    if external_value("kafka") is None and kafka_brokers() > 1:
        values["TAPEWIRE_TOPIC_REPLICATION_FACTOR"] = str(min(3, kafka_brokers()))
    if external_value("redis") is None and redis_cluster():
        values["REDIS_CLUSTER"] = "true"
        values["REDIS_STARTUP_NODES"] = ",".join(f"{HOST}:{p}" for p in redis_node_ports()[1:])
    return values
