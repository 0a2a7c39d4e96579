"""Local servers for tapewire development and tests, without Docker.

Starts (and stops) three servers whose data lives under ``.local/`` at the
repository root (git-ignored):

* Apache Kafka 4.1.1 in KRaft mode (jars resolved from Maven Central through
  ``tools/kafka-runtime/pom.xml``), on 127.0.0.1:19092 (controller on 19093);
* Redis (``redis-server`` from PATH, installed with apt when missing and root),
  on 127.0.0.1:16379;
* PostgreSQL (``initdb``/``pg_ctl`` from PATH or ``/usr/lib/postgresql/*/bin``),
  on 127.0.0.1:15432, with role and database ``tapewire``.

Standard library only: it must run before any virtualenv exists.

Command line (from the repository root)::

    python3 -m tools.devstack up           # start what is missing, print exports
    eval "$(python3 -m tools.devstack up)" # ... and use them in this shell
    python3 -m tools.devstack env          # the exports, without starting anything
    python3 -m tools.devstack env --dotenv # KEY=VALUE lines instead
    python3 -m tools.devstack status       # running / stopped / external
    python3 -m tools.devstack down [--wipe]

A server is *external* when its variable (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``, ``DATABASE_URL``) is set to something other than the local
server's own address: devstack then leaves it alone. Ports can be moved with
``DEVSTACK_KAFKA_PORT``, ``DEVSTACK_REDIS_PORT`` and ``DEVSTACK_PG_PORT``;
``DEVSTACK_KAFKA_BROKERS=3`` runs Kafka as a cluster of three KRaft nodes (``kafka_cluster``),
``DEVSTACK_REDIS_CLUSTER=1`` Redis as a Redis Cluster of 3 masters and 3 replicas (``redis_cluster``).

From Python (e.g. a pytest fixture)::

    from tools.devstack import ensure_up
    env = ensure_up()   # {"KAFKA_BOOTSTRAP_SERVERS": ..., "REDIS_URL": ..., "DATABASE_URL": ...}

``down`` keeps the data unless ``--wipe`` (the downloaded Kafka jars are kept
even then). Modules: ``paths`` (locations, ports, the variables), ``process``
(detached servers, pid files, logs), ``kafka``, ``kafka_cluster``, ``redis``, ``postgres``,
``stack`` (the lock, up/status/down), ``chromium``, ``prometheus``, ``jaeger`` (built by
``go_install``), ``cli``.
"""

from tools.devstack.chromium import ensure_chromium
from tools.devstack.cli import main
from tools.devstack.errors import DevstackError
from tools.devstack.jaeger import ensure_jaeger
from tools.devstack.kafka import (
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
from tools.devstack.paths import KAFKA_LIBS, LOCAL, ROOT, SERVICES, env_vars
from tools.devstack.prometheus import ensure_prometheus
from tools.devstack.stack import down, ensure_up, status

__all__ = [
    "KAFKA_LIBS",
    "LOCAL",
    "LOG4J2_PROPERTIES",
    "ROOT",
    "SERVICES",
    "DevstackError",
    "cluster_node_properties",
    "down",
    "ensure_chromium",
    "ensure_jaeger",
    "ensure_prometheus",
    "ensure_up",
    "env_vars",
    "kafka_format_command",
    "kafka_java",
    "kafka_new_cluster_id",
    "kafka_properties",
    "kafka_ready",
    "kafka_server_command",
    "main",
    "override",
    "status",
]
