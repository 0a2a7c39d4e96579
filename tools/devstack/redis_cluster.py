"""A local Redis Cluster: ``DEVSTACK_REDIS_CLUSTER=1`` runs 3 masters and 3 replicas instead of
the single server, each a ``redis-server`` of its own, so that tapewire can be tried (and tested)
on what a managed Redis Cluster is, failovers included.

Node n listens on ``DEVSTACK_REDIS_PORT + n - 1`` (its cluster bus 10000 higher, Redis's default),
keeps its ``nodes.conf`` in ``.local/redis/cluster-<port of node 1>/node-<port>/`` and its log in
``.local/logs/redis-<port>.log`` (named by port, so that clusters on other ports, such as a
test's, are told apart). Nothing is persisted (no AOF, no RDB): the cluster is a cache, made
afresh by every ``up`` that finds none of its nodes running. A node timeout of 1 s makes a
replica take over from a dead master in 2–3 s.

Standard library only, as the rest of devstack: the nodes are asked over a few lines of RESP.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from tools.devstack.errors import DevstackError
from tools.devstack.paths import HOST, REDIS_BUS_OFFSET, REDIS_DIR, RUN_DIR, redis_node_ports
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
from tools.devstack.redis import redis_pid, redis_server_binary

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
REPLICAS_PER_MASTER = 1

# A RESP2 reply, as far as devstack reads them: strings, integers, arrays; None for nil and errors.
Reply = str | int | list["Reply"] | None


def node_name(port: int) -> str:
    """The pid file's and the log's name of the node listening on ``port``."""
    return f"redis-{port}"


def node_pid(port: int) -> int | None:
    pid = read_pid(pid_file(node_name(port)))
    return pid if pid is not None and pid_alive(pid, CMDLINE_HINT["redis"]) else None


def cluster_directory(first_port: int | None = None) -> Path:
    """Where the cluster of ``first_port`` keeps its nodes: the directory its ``cluster_up`` was
    given, else ``.local/redis/cluster-<first port>``."""
    first = redis_node_ports(first_port)[0]
    with suppress(OSError):
        return Path(_directory_record(first).read_text().strip())
    return REDIS_DIR / f"cluster-{first}"


def cluster_running(first_port: int | None = None) -> bool:
    return all(node_pid(p) is not None and _text(p, "PING") == "PONG" for p in redis_node_ports(first_port))


def cluster_pid(first_port: int | None = None) -> int | None:
    """The first node's pid, if it runs."""
    return node_pid(redis_node_ports(first_port)[0])


def masters(first_port: int | None = None) -> list[int]:
    """The client ports of the nodes that are masters now, each by its own word (a dead node
    says nothing, so a replica promoted in its place is counted, the dead master not)."""
    return [
        p
        for p in redis_node_ports(first_port)
        if _fields(_text(p, "INFO", "replication")).get("role") == "master"
    ]


def wait_healthy(ports: list[int], timeout_s: float) -> None:
    """Wait until every node of ``ports`` says the cluster is ok with all 16384 slots served, and
    every replica among them has its link to its master up; raise :class:`DevstackError` if one
    of them exits, or after ``timeout_s`` (naming what was still wrong)."""
    name = f"the Redis cluster on {HOST}:{ports[0]}"
    try:
        wait_until(
            name,
            lambda: _unhealthy(ports) is None,
            lambda: all(node_pid(p) is not None for p in ports),
            log_file(node_name(ports[0])),
            timeout_s,
        )
    except DevstackError as e:
        raise DevstackError(f"{e}\nnot healthy: {_unhealthy(ports)}") from None


def cluster_up(first_port: int | None = None, directory: Path | None = None) -> list[int]:
    """Start the 6 nodes on ``first_port`` (default ``DEVSTACK_REDIS_PORT``) and the next five,
    join them into a cluster of 3 masters each with a replica, wait until it is healthy, and
    return the client ports. At once when that cluster already runs and is ok. When none of its
    nodes runs, the cluster is made afresh in ``directory`` (default
    ``.local/redis/cluster-<first port>``); when only some do, the others are started again from
    their ``nodes.conf`` and rejoin (a master that was replaced comes back as a replica)."""
    ports = redis_node_ports(first_port)
    _refuse_single_server(ports)
    if cluster_running(ports[0]) and _unhealthy(ports) is None:
        return ports
    exe = redis_server_binary()
    if all(node_pid(p) is None for p in ports):
        folder = directory if directory is not None else REDIS_DIR / f"cluster-{ports[0]}"
        _fresh_directory(folder, ports)
    else:
        folder = directory if directory is not None else cluster_directory(ports[0])
        _check_rejoin(folder, ports)
    for p in ports:
        if node_pid(p) is None:
            _start_node(exe, folder, p)
    for p in ports:
        _wait_answering(p)
    if _fields(_text(ports[0], "CLUSTER", "INFO")).get("cluster_known_nodes") == "1":
        _create(exe, ports)
    wait_healthy(ports, START_TIMEOUT["redis"])
    return ports


def cluster_down(first_port: int | None = None, wipe: bool = False) -> None:
    """Stop the nodes of the cluster on ``first_port`` (default: every devstack Redis cluster node
    that has a pid file, whatever its ports), all told at once; with ``wipe`` also delete their
    directories."""
    if first_port is None:
        names = [path.stem for path in RUN_DIR.glob("redis-*.pid")]
        firsts = _known_clusters()
    else:
        names = [node_name(p) for p in redis_node_ports(first_port)]
        firsts = {first_port}
    running = {name: read_pid(pid_file(name)) for name in names}
    for pid in running.values():
        if pid is not None and pid_alive(pid, CMDLINE_HINT["redis"]):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for name, pid in running.items():
        if pid is not None:
            log(f"stopping {name} (pid {pid})")
            stop_pid(name, pid, hint=CMDLINE_HINT["redis"])
        pid_file(name).unlink(missing_ok=True)
    if wipe:
        for first in firsts:
            _wipe(cluster_directory(first), redis_node_ports(first))
            _directory_record(first).unlink(missing_ok=True)


def _command(port: int, *args: str, timeout: float = 1.0) -> Reply:
    """The reply of the node on ``port`` to one command; None when it does not answer, or
    answers an error."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s, s.makefile("rb") as reply:
            s.sendall(request.encode())
            return _read(reply)
    except (OSError, ValueError):
        return None


def _read(reply: BinaryIO) -> Reply:
    """One RESP2 value: what PING, INFO and CLUSTER INFO/SLOTS answer (an error reads as None)."""
    header = reply.readline()
    kind, rest = header[:1], header[1:].strip()
    if kind == b"+":
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        return None if int(rest) < 0 else reply.read(int(rest) + 2)[:-2].decode()
    if kind == b"*":
        return None if int(rest) < 0 else [_read(reply) for _ in range(int(rest))]
    return None


def _text(port: int, *args: str) -> str | None:
    reply = _command(port, *args)
    return reply if isinstance(reply, str) else None


def _fields(text: str | None) -> dict[str, str]:
    """``key:value`` lines (INFO, CLUSTER INFO) as a dict; comments and blank lines dropped."""
    pairs = (
        line.split(":", 1) for line in (text or "").splitlines() if ":" in line and not line.startswith("#")
    )
    return {key: value.strip() for key, value in pairs}


def _listed_replicas(port: int) -> set[int]:
    """The replicas that the node on ``port`` gives clients (CLUSTER SLOTS, from which redis-py
    and the other cluster clients learn the nodes). A node lists a replica only once gossip has
    brought it the replica's replication offset, a moment after the replica has synced."""
    slots = _command(port, "CLUSTER", "SLOTS")
    ranges = [r for r in slots if isinstance(r, list)] if isinstance(slots, list) else []
    nodes = [node for r in ranges for node in r[3:] if isinstance(node, list) and len(node) > 1]
    return {node[1] for node in nodes if isinstance(node[1], int)}


def _node_unhealthy(port: int) -> str | None:
    """What is wrong with the node on ``port``: its cluster not ok, or it is a replica without
    its master."""
    info = _fields(_text(port, "CLUSTER", "INFO"))
    if not info:
        return f"{HOST}:{port} does not answer CLUSTER INFO"
    if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
        state, slots_ok = info.get("cluster_state"), info.get("cluster_slots_ok")
        return f"{HOST}:{port} has cluster_state:{state}, {slots_ok} slots ok"
    replication = _fields(_text(port, "INFO", "replication"))
    if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
        return (
            f"{HOST}:{port} is a replica whose link to its master is {replication.get('master_link_status')}"
        )
    return None


def _unhealthy(ports: list[int]) -> str | None:
    """What keeps the nodes of ``ports`` from being a healthy cluster (the first thing found), or
    None when every one is ok with all slots served, every replica is linked to its master, and
    every node gives clients every replica."""
    for p in ports:
        wrong = _node_unhealthy(p)
        if wrong is not None:
            return wrong
    replicas = {p for p in ports if _fields(_text(p, "INFO", "replication")).get("role") == "slave"}
    for p in ports:
        missing = replicas - _listed_replicas(p)
        if missing:
            return f"{HOST}:{p} does not list the replicas {sorted(missing)} yet"
    return None


def _directory_record(first: int) -> Path:
    """Where ``cluster_up`` notes the directory of the cluster on ``first``, for ``down --wipe``."""
    return RUN_DIR / f"redis-cluster-{first}.dir"


def _known_clusters() -> set[int]:
    """The first ports of the clusters that have a directory here or noted elsewhere."""
    names = [path.name for path in REDIS_DIR.glob("cluster-*")]
    names += [
        path.name.removeprefix("redis-").removesuffix(".dir") for path in RUN_DIR.glob("redis-cluster-*.dir")
    ]
    return {int(name.removeprefix("cluster-")) for name in names if name.removeprefix("cluster-").isdigit()}


def _refuse_single_server(ports: list[int]) -> None:
    single = started_port("redis") if redis_pid() is not None else None
    if single is not None and single in {q for p in ports for q in (p, p + REDIS_BUS_OFFSET)}:
        raise DevstackError(
            "devstack's single Redis server is running: run `python3 -m tools.devstack down` "
            "before starting a cluster (DEVSTACK_REDIS_CLUSTER)"
        )


def _fresh_directory(folder: Path, ports: list[int]) -> None:
    """Empty node directories for a new cluster: a ``nodes.conf`` of an earlier one would make the
    node rejoin that, and ``--cluster create`` refuse it. Only ``node-<port>`` is deleted, never
    the rest of a directory a caller passed."""
    for p in ports:
        for taken in (p, p + REDIS_BUS_OFFSET):
            if port_open(taken):
                raise DevstackError(
                    f"port {HOST}:{taken} is already in use by a process devstack did not start "
                    f"(the Redis cluster uses {ports[0]}..{ports[-1]} and 10000 above): stop it, "
                    "or set DEVSTACK_REDIS_PORT"
                )
    _wipe(folder, ports)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _directory_record(ports[0]).write_text(f"{folder.resolve()}\n")


def _check_rejoin(folder: Path, ports: list[int]) -> None:
    """A stopped node of a running cluster can only come back with the ``nodes.conf`` it left."""
    for p in ports:
        if node_pid(p) is None and not (folder / f"node-{p}" / "nodes.conf").exists():
            raise DevstackError(
                f"Redis cluster node {HOST}:{p} is not running and {folder / f'node-{p}'} has no nodes.conf "
                "to rejoin with: run `python3 -m tools.devstack down` to start the cluster afresh"
            )


def _wipe(folder: Path, ports: list[int]) -> None:
    for p in ports:
        shutil.rmtree(folder / f"node-{p}", ignore_errors=True)
    with suppress(OSError):
        folder.rmdir()  # only when nothing else is left in it


def _start_node(exe: str, folder: Path, port: int) -> None:
    node = folder / f"node-{port}"
    node.mkdir(parents=True, exist_ok=True)
    log(f"starting redis cluster node on {HOST}:{port}")
    cmd = [
        exe,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--protected-mode",
        "no",
        "--dir",
        str(node),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(node / "nodes.conf"),
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
        "--appendonly",
        "no",
        "--save",
        "",
        # A replica's first sync starts at once, not after the 5 s a master waits by default for
        # more replicas to share one transfer: each master here has one, and its data is small.
        "--repl-diskless-sync-delay",
        "0",
        # Nodes give clients (CLUSTER SLOTS) only the replicas whose replication offset is not 0,
        # and in an empty cluster only a master's pings move it: each second, not each 10 s.
        "--repl-ping-replica-period",
        "1",
        "--daemonize",
        "no",
    ]
    spawn_detached(node_name(port), cmd, port, cwd=node)


def _wait_answering(port: int) -> None:
    name = node_name(port)
    wait_until(
        name,
        lambda: _text(port, "PING") == "PONG",
        lambda: node_pid(port) is not None,
        log_file(name),
        START_TIMEOUT["redis"],
    )


def _create(exe: str, ports: list[int]) -> None:
    """Assign the slots to 3 masters and a replica to each (``redis-cli --cluster create``, which
    returns once every node has joined)."""
    cli = Path(exe).with_name("redis-cli")
    if not cli.exists():
        found = shutil.which("redis-cli")
        if found is None:
            raise DevstackError("redis-cli is not installed (it comes with redis-server, in redis-tools)")
        cli = Path(found)
    log(f"creating the redis cluster on {HOST}:{ports[0]}..{ports[-1]}")
    nodes = [f"{HOST}:{p}" for p in ports]
    run(
        [
            str(cli),
            "--cluster",
            "create",
            *nodes,
            "--cluster-replicas",
            str(REPLICAS_PER_MASTER),
            "--cluster-yes",
        ],
        "redis-cli --cluster create",
    )
