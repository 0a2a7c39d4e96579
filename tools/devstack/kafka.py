"""Apache Kafka 4.1.1 in KRaft mode on 127.0.0.1:19092 (controller on 19093).

The jars are resolved from Maven Central through ``tools/kafka-runtime/pom.xml`` into
``.local/kafka/libs`` (kept by ``down --wipe``). The command builders (``kafka_properties``,
``kafka_format_command``, ``kafka_server_command``, ``kafka_ready``) are also what the fault
tests use for the private brokers they stop and restart.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from tools.devstack.errors import DevstackError
from tools.devstack.paths import (
    HOST,
    KAFKA_CONFIG,
    KAFKA_DATA,
    KAFKA_DIR,
    KAFKA_FORMAT_MARKER,
    KAFKA_LIBS,
    KAFKA_LIBS_MARKER,
    KAFKA_LOG4J,
    KAFKA_POM,
    ROOT,
    port,
)
from tools.devstack.process import (
    CMDLINE_HINT,
    START_TIMEOUT,
    check_same_port,
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

# Kafka 4.1 logs "[KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)"
# once the combined broker+controller is up (a few seconds after the port first answers).
KAFKA_STARTED_RE = re.compile(r"\] Kafka Server started")
KAFKA_HEAP = ("-Xmx512m", "-Xms256m")

LOG4J2_PROPERTIES = """\
# Written by tools/devstack: Kafka broker logs to stdout (.local/logs/kafka.log).
status = warn
name = devstack-kafka
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka-clients.name = org.apache.kafka.clients
logger.kafka-clients.level = WARN
logger.state-change.name = state.change.logger
logger.state-change.level = WARN
"""


def _java_major() -> int:
    proc = subprocess.run(["java", "-version"], capture_output=True, text=True)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def kafka_check_tools() -> None:
    if not shutil.which("java"):
        raise DevstackError(
            "java is not installed: Kafka needs a Java 17+ runtime "
            "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"
        )
    major = _java_major()
    if major and major < 17:
        raise DevstackError(f"java {major} is too old: Kafka 4 needs Java 17+ (e.g. openjdk-17-jre-headless)")


def _pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def _kafka_libs_ready() -> bool:
    try:
        return KAFKA_LIBS_MARKER.read_text().strip() == _pom_digest()
    except OSError:
        return False


def kafka_install() -> None:
    """Resolve the broker's jars into .local/kafka/libs (skipped when complete)."""
    if _kafka_libs_ready():
        return
    if not shutil.which("mvn"):
        raise DevstackError(
            "mvn is not installed: it fetches the Kafka jars pinned in "
            "tools/kafka-runtime/pom.xml (Debian/Ubuntu: apt-get install maven)"
        )
    log("resolving Kafka jars with Maven into .local/kafka/libs (about a minute the first time)")
    if KAFKA_LIBS.exists():
        shutil.rmtree(KAFKA_LIBS)
    tmp = KAFKA_DIR / "libs.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    run(
        [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ],
        "mvn dependency:copy-dependencies",
        cwd=KAFKA_POM.parent,
    )
    if not list(tmp.glob("kafka_2.13-*.jar")):
        raise DevstackError(f"Maven finished but no kafka_2.13 jar is in {tmp.relative_to(ROOT)}")
    tmp.rename(KAFKA_LIBS)
    KAFKA_LIBS_MARKER.write_text(_pom_digest() + "\n")


def kafka_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """``server.properties`` of a single KRaft node (broker and controller) on HOST.

    Also what the fault tests give the private brokers they stop and restart.
    """
    return (
        "# Written by tools/devstack on every start; edits are overwritten.\n"
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"controller.quorum.bootstrap.servers={HOST}:{controller_port}\n"
        f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}\n"
        f"advertised.listeners=PLAINTEXT://{HOST}:{port}\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        f"log.dirs={data_dir}\n"
        "offsets.topic.replication.factor=1\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        # Abort a crashed producer's open transaction soon after its timeout (default: a 10 s sweep).
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n"
        "group.initial.rebalance.delay.ms=0\n"
        "num.partitions=6\n"
        "auto.create.topics.enable=false\n"
    )


def override(properties: str, changes: Mapping[str, str]) -> str:
    """`properties` (key=value lines) with `changes` applied: replaced in place, else appended."""
    lines, seen = [], set()
    for line in properties.splitlines():
        key = line.split("=", 1)[0]
        if key in changes and not line.startswith("#"):
            lines.append(f"{key}={changes[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in changes.items() if key not in seen]
    return "\n".join(lines) + "\n"


def cluster_node_properties(node: int, ports: Mapping[int, tuple[int, int]], data_dir: Path) -> str:
    """``server.properties`` of node ``node`` of a cluster whose every node (``ports``: node id ->
    client and controller port) is a broker and a voter of a static controller quorum; internal
    topics get 3 replicas (fewer with fewer nodes) and 2 of them in sync, as in production."""
    client, controller = ports[node]
    single = kafka_properties(client, controller, data_dir)
    # A static quorum of every node, in place of the standalone one's bootstrap server.
    base = "".join(
        line + "\n"
        for line in single.splitlines()
        if not line.startswith("controller.quorum.bootstrap.servers=")
    )
    voters = ",".join(f"{n}@{HOST}:{controller_port}" for n, (_, controller_port) in ports.items())
    replicas = str(min(3, len(ports)))
    in_sync = str(min(2, len(ports)))
    return override(base, {
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "default.replication.factor": replicas,
        "min.insync.replicas": in_sync,
    })  # fmt: skip


def _kafka_write_config(p: int) -> None:
    KAFKA_DATA.mkdir(parents=True, exist_ok=True)
    KAFKA_LOG4J.write_text(LOG4J2_PROPERTIES)
    KAFKA_CONFIG.write_text(kafka_properties(p, p + 1, KAFKA_DATA))


def kafka_java(*args: str, heap: tuple[str, ...] = (), log4j_config: Path = KAFKA_LOG4J) -> list[str]:
    """``java ... <args>`` with the jars in .local/kafka/libs on the class path."""
    return [
        "java",
        *heap,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        *args,
    ]


def kafka_new_cluster_id() -> str:
    """A random KRaft cluster id (what ``kafka-storage random-uuid`` prints).

    Never one that starts with "-": StorageTool would read it as an option and refuse to format
    (Kafka's own ``Uuid.randomUuid`` skips those too).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_format_command(
    config: Path,
    cluster_id: str,
    log4j_config: Path = KAFKA_LOG4J,
    scram: tuple[str, ...] = (),
    standalone: bool = True,
) -> list[str]:
    """StorageTool formatting the log dir of ``config`` as a standalone controller quorum of one
    (or, not ``standalone``, as one node of the static quorum its controller.quorum.voters name).

    ``scram``: SCRAM credentials to store with it, each as StorageTool's ``--add-scram`` takes
    them (``SCRAM-SHA-256=[name=alice,password=...]``): how a KRaft cluster gets its first users.
    """
    return kafka_java(
        "kafka.tools.StorageTool",
        "format",
        *(["--standalone"] if standalone else []),
        "-t",
        cluster_id,
        "-c",
        str(config),
        *(arg for credential in scram for arg in ("--add-scram", credential)),
        log4j_config=log4j_config,
    )


def kafka_server_command(config: Path, log4j_config: Path = KAFKA_LOG4J) -> list[str]:
    """The broker itself (``kafka.Kafka``), with devstack's heap."""
    return kafka_java("kafka.Kafka", str(config), heap=KAFKA_HEAP, log4j_config=log4j_config)


def _kafka_format(p: int) -> None:
    """Format the KRaft log dir once (a standalone controller quorum of one)."""
    if (KAFKA_DATA / "meta.properties").exists():
        try:
            formatted = int(KAFKA_FORMAT_MARKER.read_text().strip())
        except (OSError, ValueError):
            formatted = p + 1
        if formatted != p + 1:
            raise DevstackError(
                f"the Kafka data in .local/kafka/data was formatted for controller port {formatted}, "
                f"not {p + 1}: set DEVSTACK_KAFKA_PORT={formatted - 1} again, "
                "or run `python3 -m tools.devstack down --wipe` to start afresh"
            )
        return
    cluster_id = kafka_new_cluster_id()
    log(f"formatting Kafka storage (cluster id {cluster_id})")
    run(kafka_format_command(KAFKA_CONFIG, cluster_id), "kafka-storage format")
    KAFKA_FORMAT_MARKER.write_text(f"{p + 1}\n")


def kafka_pid() -> int | None:
    pid = read_pid(pid_file("kafka"))
    return pid if pid is not None and pid_alive(pid, CMDLINE_HINT["kafka"]) else None


def kafka_running() -> bool:
    return kafka_pid() is not None and port_open(started_port("kafka") or port("kafka"))


def kafka_ready(listen_port: int, log_path: Path) -> bool:
    """The port answers and the run's log (``log_path``) says the server finished starting."""
    if not port_open(listen_port):
        return False
    try:
        return KAFKA_STARTED_RE.search(log_path.read_text(errors="replace")) is not None
    except OSError:
        return True  # log removed by hand: the port is all we can check


def _kafka_ready(p: int) -> bool:
    return kafka_ready(p, log_file("kafka"))


def kafka_up() -> None:
    p = port("kafka")
    pid = kafka_pid()
    if pid is not None:
        check_same_port("kafka", pid)
        if port_open(p):
            return
        # Started by an earlier call but not answering yet (or hung): wait for it.
        log(f"kafka (pid {pid}) is starting; waiting")
        wait_until(
            "kafka",
            lambda: _kafka_ready(p),
            lambda: kafka_pid() is not None,
            log_file("kafka"),
            START_TIMEOUT["kafka"],
        )
        return
    for taken in (p, p + 1):
        if port_open(taken):
            raise DevstackError(
                f"port {HOST}:{taken} is already in use by a process devstack did not start "
                f"(Kafka uses {p} and {p + 1}); stop it, set DEVSTACK_KAFKA_PORT, "
                "or point KAFKA_BOOTSTRAP_SERVERS at that broker"
            )
    kafka_check_tools()
    kafka_install()
    _kafka_write_config(p)
    _kafka_format(p)
    log(f"starting kafka on {HOST}:{p}")
    cmd = kafka_server_command(KAFKA_CONFIG)
    pid = spawn_detached("kafka", cmd, p, cwd=KAFKA_DIR)
    wait_until(
        "kafka",
        lambda: _kafka_ready(p),
        lambda: pid_alive(pid, CMDLINE_HINT["kafka"]),
        log_file("kafka"),
        START_TIMEOUT["kafka"],
    )


def kafka_down(wipe: bool) -> None:
    pid = kafka_pid()
    if pid is not None:
        log(f"stopping kafka (pid {pid})")
        stop_pid("kafka", pid)
    pid_file("kafka").unlink(missing_ok=True)
    if wipe:
        for path in (KAFKA_DATA, KAFKA_FORMAT_MARKER, KAFKA_CONFIG):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
