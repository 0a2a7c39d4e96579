"""A local Kafka cluster: ``DEVSTACK_KAFKA_BROKERS=3`` (or 2..9) KRaft nodes, each a broker and a
voter of a static controller quorum, with the jars, heap and logging of the single broker.

Node n listens on ``DEVSTACK_KAFKA_PORT + 2(n - 1)`` (its controller on the next port), keeps its
data in ``.local/kafka/cluster-<port of node 1>/node-<n>/`` and its log in
``.local/logs/kafka-<port>.log`` (named by port, so that clusters on other ports, such as a
test's, are told apart). Topics get
``TAPEWIRE_TOPIC_REPLICATION_FACTOR`` = 3 (``devstack env`` says so), and 2 replicas must be in
sync before a record is acknowledged.
"""

from __future__ import annotations

import os
import shutil
import signal
from contextlib import suppress
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.kafka import (
    LOG4J2_PROPERTIES,
    cluster_node_properties,
    kafka_check_tools,
    kafka_format_command,
    kafka_install,
    kafka_new_cluster_id,
    kafka_pid,
    kafka_ready,
    kafka_server_command,
)
from tools.devstack.paths import HOST, KAFKA_DIR, KAFKA_LOG4J, RUN_DIR, kafka_node_ports
from tools.devstack.process import (
    CMDLINE_HINT,
    START_TIMEOUT,
    log,
    log_file,
    pid_alive,
    pid_file,
    port_open,
    read_pid,
    run,
    spawn_detached,
    started_port,
    stop_pid,
    wait_until,
)

Ports = dict[int, tuple[int, int]]


def node_name(client_port: int) -> str:
    """The pid file's and the log's name of the node listening on ``client_port``."""
    return f"kafka-{client_port}"


def node_pid(client_port: int) -> int | None:
    pid = read_pid(pid_file(node_name(client_port)))
    return pid if pid is not None and pid_alive(pid, CMDLINE_HINT["kafka"]) else None


def cluster_directory(ports: Ports) -> Path:
    """Named by the first node's port, as the pid files and logs are."""
    return KAFKA_DIR / f"cluster-{next(iter(ports.values()))[0]}"


def cluster_running(ports: Ports | None = None) -> bool:
    nodes = kafka_node_ports() if ports is None else ports
    return all(node_pid(client) is not None and port_open(client) for client, _ in nodes.values())


def cluster_pid(ports: Ports | None = None) -> int | None:
    """The first node's pid, if it runs."""
    nodes = kafka_node_ports() if ports is None else ports
    return node_pid(next(iter(nodes.values()))[0])


def cluster_up(ports: Ports | None = None) -> None:
    """Start every node that does not run (formatting it first, once), then wait for all: none
    finishes starting before a quorum of them is up."""
    nodes = kafka_node_ports() if ports is None else ports
    single = started_port("kafka") if kafka_pid() is not None else None
    if single is not None and {single, single + 1} & {p for pair in nodes.values() for p in pair}:
        raise DevstackError(
            "devstack's single Kafka broker is running: run `python3 -m tools.devstack down` "
            "before starting a cluster (DEVSTACK_KAFKA_BROKERS)"
        )
    if cluster_running(nodes):
        return
    for client, controller in nodes.values():
        if node_pid(client) is None:
            for taken in (client, controller):
                if port_open(taken):
                    raise DevstackError(
                        f"port {HOST}:{taken} is already in use by a process devstack did not start: "
                        "stop it, or set DEVSTACK_KAFKA_PORT"
                    )
    kafka_check_tools()
    kafka_install()
    directory = cluster_directory(nodes)
    cluster_id = _cluster_id(directory, nodes)
    KAFKA_LOG4J.write_text(LOG4J2_PROPERTIES)
    for node, (client, _) in nodes.items():
        if node_pid(client) is None:
            _start_node(directory / f"node-{node}", node, nodes, cluster_id)
    for client, _ in nodes.values():
        _wait_ready(client)


def cluster_down(wipe: bool, ports: Ports | None = None) -> None:
    """Stop the nodes of ``ports`` (default: every devstack Kafka node that has a pid file). All
    are told at once: a node stopped last, after the quorum is gone, would wait for it."""
    if ports is None:
        names = [path.stem for path in RUN_DIR.glob("kafka-*.pid")]
    else:
        names = [node_name(client) for client, _ in ports.values()]
    running = {name: read_pid(pid_file(name)) for name in names}
    for pid in running.values():
        if pid is not None and pid_alive(pid, CMDLINE_HINT["kafka"]):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for name, pid in running.items():
        if pid is not None:
            log(f"stopping {name} (pid {pid})")
            stop_pid(name, pid, hint=CMDLINE_HINT["kafka"])
        pid_file(name).unlink(missing_ok=True)
    if wipe:
        directories = [cluster_directory(ports)] if ports is not None else list(KAFKA_DIR.glob("cluster-*"))
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)


def _wait_ready(client: int) -> None:
    name = node_name(client)
    wait_until(
        name,
        lambda: kafka_ready(client, log_file(name)),
        lambda: node_pid(client) is not None,
        log_file(name),
        START_TIMEOUT["kafka"],
    )


def _cluster_id(directory: Path, nodes: Ports) -> str:
    """The cluster's id, made once; refuses data formatted for other ports."""
    directory.mkdir(parents=True, exist_ok=True)
    layout = ",".join(f"{node}@{client}/{controller}" for node, (client, controller) in nodes.items())
    marker, id_file = directory / "ports", directory / "cluster-id"
    if id_file.exists():
        if marker.read_text().strip() != layout:
            raise DevstackError(
                f"the Kafka cluster in {directory} was formatted for ports {marker.read_text().strip()}, "
                f"not {layout}: set DEVSTACK_KAFKA_PORT as then, or run "
                "`python3 -m tools.devstack down --wipe` to start afresh"
            )
        return id_file.read_text().strip()
    cluster_id = kafka_new_cluster_id()
    marker.write_text(layout + "\n")
    id_file.write_text(cluster_id + "\n")
    return cluster_id


def _start_node(folder: Path, node: int, nodes: Ports, cluster_id: str) -> None:
    client = nodes[node][0]
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "server.properties"
    config.write_text(cluster_node_properties(node, nodes, folder / "data"))
    if not (folder / "data" / "meta.properties").exists():
        log(f"formatting Kafka node {node} (cluster id {cluster_id})")
        run(kafka_format_command(config, cluster_id, standalone=False), f"kafka-storage format (node {node})")
    log(f"starting kafka node {node} on {HOST}:{client}")
    spawn_detached(node_name(client), kafka_server_command(config), client, cwd=folder)
