#!/usr/bin/env python3
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

Command line::

    python3 tools/devstack.py up           # start what is missing, print exports
    eval "$(python3 tools/devstack.py up)" # ... and use them in this shell
    python3 tools/devstack.py env          # the exports, without starting anything
    python3 tools/devstack.py env --dotenv # KEY=VALUE lines instead
    python3 tools/devstack.py status       # running / stopped / external
    python3 tools/devstack.py down [--wipe]

A server is *external* when its variable (``KAFKA_BOOTSTRAP_SERVERS``,
``REDIS_URL``, ``DATABASE_URL``) is set to something other than the local
server's own address: devstack then leaves it alone. Ports can be moved with
``DEVSTACK_KAFKA_PORT``, ``DEVSTACK_REDIS_PORT`` and ``DEVSTACK_PG_PORT``.

From Python (e.g. a pytest fixture)::

    from tools.devstack import ensure_up
    env = ensure_up()   # {"KAFKA_BOOTSTRAP_SERVERS": ..., "REDIS_URL": ..., "DATABASE_URL": ...}

Progress messages go to stderr; only the export lines go to stdout.

``up`` and ``down`` hold an flock on ``.local/run/devstack.lock``, so concurrent
callers (several pytest processes) wait for each other. Servers run detached
(own session, output in ``.local/logs/<name>.log``, pid in ``.local/run/``) and
outlive the caller. ``down`` sends SIGTERM (PostgreSQL: SIGINT, its "fast"
shutdown), waits up to 30 s, then SIGKILLs; data is kept unless ``--wipe``
(the downloaded Kafka jars are kept even then). As root, PostgreSQL runs as the
``postgres`` system user (initdb refuses root) and ``.local/pg`` belongs to it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "KAFKA_LIBS",
    "LOCAL",
    "LOG4J2_PROPERTIES",
    "ROOT",
    "SERVICES",
    "DevstackError",
    "down",
    "ensure_up",
    "env_vars",
    "kafka_format_command",
    "kafka_java",
    "kafka_new_cluster_id",
    "kafka_properties",
    "kafka_ready",
    "kafka_server_command",
    "main",
    "status",
]

ROOT = Path(__file__).resolve().parent.parent
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

START_TIMEOUT = {"kafka": 90.0, "redis": 30.0, "postgres": 60.0}
STOP_TIMEOUT = 30.0

# Kafka 4.1 logs "[KafkaRaftServer nodeId=1] Kafka Server started (kafka.server.KafkaRaftServer)"
# once the combined broker+controller is up (a few seconds after the port first answers).
KAFKA_STARTED_RE = re.compile(r"\] Kafka Server started")
KAFKA_HEAP = ("-Xmx512m", "-Xms256m")

# What /proc/<pid>/cmdline must contain for a pid file to still be ours.
CMDLINE_HINT = {"kafka": "kafka.Kafka", "redis": "redis-server", "postgres": "postgres"}

LOG4J2_PROPERTIES = """\
# Written by tools/devstack.py: Kafka broker logs to stdout (.local/logs/kafka.log).
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


class DevstackError(RuntimeError):
    """A server could not be installed, started, or stopped."""


# --------------------------------------------------------------------------- helpers


_quiet = False


def _log(msg: str) -> None:
    if _quiet:
        return
    print(f"devstack: {msg}", file=sys.stderr, flush=True)


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
        return f"{HOST}:{p}"
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
    """The three variables ``up`` would give, without starting anything."""
    return {URL_ENV[s]: external_value(s) or local_value(s) for s in SERVICES}


def _port_open(p: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, p), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int, hint: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and its command line contains ``hint``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else (e.g. the postgres user)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        if hint is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            # Empty while the process is between fork and exec (a server just launched): alive.
            return not cmdline or hint.encode() in cmdline
    except (OSError, IndexError):
        return hint is None
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _started_port(service: str) -> int | None:
    """The port our running server was started on (may differ from ``port()``)."""
    try:
        if service == "postgres":
            return int((PG_DATA / "postmaster.pid").read_text().splitlines()[3])
        return int(_pid_file(service).read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _check_same_port(service: str, pid: int) -> None:
    started, wanted = _started_port(service), port(service)
    if started is not None and started != wanted:
        raise DevstackError(
            f"our {service} (pid {pid}) is already running on port {started}, not {wanted}: "
            f"run `python3 tools/devstack.py down` before changing {PORT_ENV[service]}"
        )


def _pid_file(service: str) -> Path:
    return RUN_DIR / f"{service}.pid"


def _log_file(service: str) -> Path:
    return LOG_DIR / f"{service}.log"


def _log_tail(path: Path, lines: int = 40) -> str:
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        data = path.read_bytes()
    except OSError:
        return f"(no log at {rel})"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return f"--- last {len(text)} lines of {rel} ---\n" + "\n".join(text)


def _rotate_log(path: Path) -> None:
    """Keep the previous run's log as ``<name>.log.1``; start a fresh one."""
    if path.exists() and path.stat().st_size > 0:
        path.replace(path.with_name(path.name + ".1"))


def _is_root() -> bool:
    return os.geteuid() == 0


def _clean_env() -> dict[str, str]:
    """Our environment minus libpq variables that could redirect psql & co."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(
    cmd: list[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=cwd, env=env if env is not None else _clean_env()
        )
    except FileNotFoundError as e:
        raise DevstackError(f"{what}: {e}") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise DevstackError(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{out}")
    return proc


def _apt_install(package: str) -> None:
    if not _is_root():
        raise DevstackError(f"apt install of {package} needs root")
    if not shutil.which("apt-get"):
        raise DevstackError(f"{package} is missing and apt-get is not available: install it by hand")
    _log(f"installing {package} with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", package], f"apt-get install {package}", env=env)


def _spawn_detached(
    service: str, cmd: list[str], listen_port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start ``cmd`` in its own session, output to .local/logs/<service>.log.

    A throw-away ``sh`` backgrounds the server, writes its pid and exits, so the
    server is re-parented to init rather than being our child: it outlives the
    caller, and a long-lived caller (pytest) never holds a zombie or a
    ``Popen`` object that warns about a still-running process.
    """
    pid_file = _pid_file(service)
    pid_file.unlink(missing_ok=True)
    log_path = _log_file(service)
    _rotate_log(log_path)
    with log_path.open("ab") as log:
        launcher = subprocess.Popen(
            ["sh", "-c", '"$@" & echo $! > "$DEVSTACK_PID_FILE"', "sh", *cmd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env if env is not None else os.environ, DEVSTACK_PID_FILE=str(pid_file)),
            start_new_session=True,
            close_fds=True,
        )
        launcher.wait()
    pid = _read_pid(pid_file)
    if launcher.returncode != 0 or pid is None:
        raise DevstackError(f"could not start {service}\n{_log_tail(log_path)}")
    pid_file.write_text(f"{pid}\n{listen_port}\n")
    return pid


def _wait_until(
    service: str,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    log_path: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if not alive():
            raise DevstackError(f"{service} exited during start-up\n{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            raise DevstackError(
                f"{service} did not accept connections within {timeout:.0f}s "
                f"(it is still running; see the log, or run `down`)\n{_log_tail(log_path)}"
            )
        time.sleep(0.25)


def _port_taken_error(service: str) -> DevstackError:
    p = port(service)
    return DevstackError(
        f"port {HOST}:{p} is already in use by a process devstack did not start; "
        f"stop it, or set {PORT_ENV[service]} to another port, "
        f"or point {URL_ENV[service]} at that server"
    )


def _stop_pid(service: str, pid: int, sig: int = signal.SIGTERM, hint: str | None = None) -> None:
    """Send ``sig``, wait up to STOP_TIMEOUT, then SIGKILL."""
    hint = hint or CMDLINE_HINT[service]
    if not _pid_alive(pid, hint):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _pid_alive(pid, hint):
            return
        time.sleep(0.2)
    _log(f"{service} (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not _pid_alive(pid, hint):
            return
        time.sleep(0.1)
    raise DevstackError(f"{service} (pid {pid}) survived SIGKILL")


# --------------------------------------------------------------------------- Kafka


def _java_major() -> int:
    proc = subprocess.run(["java", "-version"], capture_output=True, text=True)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _kafka_check_tools() -> None:
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


def _kafka_install() -> None:
    """Resolve the broker's jars into .local/kafka/libs (skipped when complete)."""
    if _kafka_libs_ready():
        return
    if not shutil.which("mvn"):
        raise DevstackError(
            "mvn is not installed: it fetches the Kafka jars pinned in "
            "tools/kafka-runtime/pom.xml (Debian/Ubuntu: apt-get install maven)"
        )
    _log("resolving Kafka jars with Maven into .local/kafka/libs (about a minute the first time)")
    if KAFKA_LIBS.exists():
        shutil.rmtree(KAFKA_LIBS)
    tmp = KAFKA_DIR / "libs.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    _run(
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
        "# Written by tools/devstack.py on every start; edits are overwritten.\n"
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


def kafka_format_command(config: Path, cluster_id: str, log4j_config: Path = KAFKA_LOG4J) -> list[str]:
    """StorageTool formatting the log dir of ``config`` as a standalone controller quorum of one."""
    return kafka_java(
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cluster_id,
        "-c",
        str(config),
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
                "or run `python3 tools/devstack.py down --wipe` to start afresh"
            )
        return
    cluster_id = kafka_new_cluster_id()
    _log(f"formatting Kafka storage (cluster id {cluster_id})")
    _run(kafka_format_command(KAFKA_CONFIG, cluster_id), "kafka-storage format")
    KAFKA_FORMAT_MARKER.write_text(f"{p + 1}\n")


def _kafka_pid() -> int | None:
    pid = _read_pid(_pid_file("kafka"))
    return pid if pid is not None and _pid_alive(pid, CMDLINE_HINT["kafka"]) else None


def _kafka_running() -> bool:
    return _kafka_pid() is not None and _port_open(_started_port("kafka") or port("kafka"))


def kafka_ready(listen_port: int, log_path: Path) -> bool:
    """The port answers and the run's log (``log_path``) says the server finished starting."""
    if not _port_open(listen_port):
        return False
    try:
        return KAFKA_STARTED_RE.search(log_path.read_text(errors="replace")) is not None
    except OSError:
        return True  # log removed by hand: the port is all we can check


def _kafka_ready(p: int) -> bool:
    return kafka_ready(p, _log_file("kafka"))


def _kafka_up() -> None:
    p = port("kafka")
    pid = _kafka_pid()
    if pid is not None:
        _check_same_port("kafka", pid)
        if _port_open(p):
            return
        # Started by an earlier call but not answering yet (or hung): wait for it.
        _log(f"kafka (pid {pid}) is starting; waiting")
        _wait_until(
            "kafka",
            lambda: _kafka_ready(p),
            lambda: _kafka_pid() is not None,
            _log_file("kafka"),
            START_TIMEOUT["kafka"],
        )
        return
    for taken in (p, p + 1):
        if _port_open(taken):
            raise DevstackError(
                f"port {HOST}:{taken} is already in use by a process devstack did not start "
                f"(Kafka uses {p} and {p + 1}); stop it, set DEVSTACK_KAFKA_PORT, "
                "or point KAFKA_BOOTSTRAP_SERVERS at that broker"
            )
    _kafka_check_tools()
    _kafka_install()
    _kafka_write_config(p)
    _kafka_format(p)
    _log(f"starting kafka on {HOST}:{p}")
    cmd = kafka_server_command(KAFKA_CONFIG)
    pid = _spawn_detached("kafka", cmd, p, cwd=KAFKA_DIR)
    _wait_until(
        "kafka",
        lambda: _kafka_ready(p),
        lambda: _pid_alive(pid, CMDLINE_HINT["kafka"]),
        _log_file("kafka"),
        START_TIMEOUT["kafka"],
    )


def _kafka_down(wipe: bool) -> None:
    pid = _kafka_pid()
    if pid is not None:
        _log(f"stopping kafka (pid {pid})")
        _stop_pid("kafka", pid)
    _pid_file("kafka").unlink(missing_ok=True)
    if wipe:
        for path in (KAFKA_DATA, KAFKA_FORMAT_MARKER, KAFKA_CONFIG):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- Redis


def _redis_ping(p: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, p), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_pid() -> int | None:
    pid = _read_pid(_pid_file("redis"))
    return pid if pid is not None and _pid_alive(pid, CMDLINE_HINT["redis"]) else None


def _redis_running() -> bool:
    return _redis_pid() is not None and _redis_ping(_started_port("redis") or port("redis"))


def _redis_server() -> str:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    if not _is_root():
        raise DevstackError(
            "redis-server is not installed (and devstack is not root, so it cannot apt-get it): "
            "install it, e.g. `sudo apt-get install redis-server`, or set REDIS_URL"
        )
    _apt_install("redis-server")
    exe = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not exe:
        raise DevstackError("apt-get installed redis-server but no redis-server binary was found")
    return exe


def _redis_up() -> None:
    p = port("redis")
    pid = _redis_pid()
    if pid is not None:
        _check_same_port("redis", pid)
        if _redis_ping(p):
            return
    else:
        if _port_open(p):
            raise _port_taken_error("redis")
        exe = _redis_server()
        REDIS_DIR.mkdir(parents=True, exist_ok=True)
        _log(f"starting redis on {HOST}:{p}")
        cmd = [
            exe,
            "--port",
            str(p),
            "--bind",
            HOST,
            "--dir",
            str(REDIS_DIR),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        pid = _spawn_detached("redis", cmd, p, cwd=REDIS_DIR)
    _wait_until(
        "redis",
        lambda: _redis_ping(p),
        lambda: _pid_alive(pid, CMDLINE_HINT["redis"]),
        _log_file("redis"),
        START_TIMEOUT["redis"],
    )


def _redis_down(wipe: bool) -> None:
    pid = _redis_pid()
    if pid is not None:
        _log(f"stopping redis (pid {pid})")
        _stop_pid("redis", pid)
    _pid_file("redis").unlink(missing_ok=True)
    if wipe and REDIS_DIR.exists():
        shutil.rmtree(REDIS_DIR)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir_ok(d: Path) -> bool:
    return all((d / name).exists() for name in ("initdb", "pg_ctl", "postgres"))


def _pg_data_version() -> str | None:
    try:
        return (PG_DATA / "PG_VERSION").read_text().strip() or None
    except OSError:
        return None


def _pg_bindir_candidates() -> list[Path]:
    """Debian's dir for the existing cluster's version, then PATH, then the newest installed."""
    candidates: list[Path] = []
    data_version = _pg_data_version()
    if data_version:
        candidates.append(Path(f"/usr/lib/postgresql/{data_version}/bin"))
    for name in ("pg_ctl", "initdb"):
        exe = shutil.which(name)
        if exe:
            candidates.append(Path(exe).resolve().parent)

    def version_key(d: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", d.parent.name)) or (0,)

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True))
    if data_version and Path(f"/usr/lib/postgresql/{data_version}").exists():
        # A Debian install of the cluster's own version exists: never use another one.
        candidates = [d for d in candidates if d.parent.name == data_version]
    return candidates


def _pg_bindir(install: bool) -> Path | None:
    """The directory with initdb/pg_ctl/postgres/psql, matching an existing cluster."""
    for d in _pg_bindir_candidates():
        if _pg_bindir_ok(d):
            return d
    if not install:
        return None
    if not _is_root():
        raise DevstackError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
            "/usr/lib/postgresql/*/bin, and devstack is not root: install them "
            "(e.g. `sudo apt-get install postgresql`) or set DATABASE_URL"
        )
    _apt_install("postgresql")
    found = _pg_bindir(install=False)
    if found is None:
        raise DevstackError("apt-get installed postgresql but no initdb/pg_ctl/postgres was found")
    return found


def _pg_tool(bindir: Path | None, name: str) -> str:
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    exe = shutil.which(name)
    if exe:
        return exe
    raise DevstackError(f"{name} was not found (PostgreSQL client tools: apt-get install postgresql-client)")


def _pg_as_owner(cmd: list[str]) -> list[str]:
    """Run server-side commands as the ``postgres`` user when we are root."""
    if _is_root():
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_prepare_dirs() -> None:
    """Create .local/pg etc. and, as root, hand them to the postgres user."""
    PG_DIR.mkdir(parents=True, exist_ok=True)
    if _is_root():
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise DevstackError(
                "running as root, but there is no `postgres` system user to run the server as "
                "(initdb refuses root): install the postgresql package or run devstack as a normal user"
            ) from None
        os.chown(PG_DIR, pw.pw_uid, pw.pw_gid)
        if _socket_dir() is not None:
            PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
            os.chown(PG_SOCKET_DIR, pw.pw_uid, pw.pw_gid)
        if not _as_postgres_ok("-w", PG_DIR, "-a", "-x", PG_DIR):
            blocked = next((a for a in reversed(PG_DIR.parents) if not _as_postgres_ok("-x", a)), PG_DIR)
            raise DevstackError(
                f"the postgres user cannot reach {PG_DIR}: {blocked} is not traversable by it "
                "(chmod o+x that folder, or run devstack as a normal user)"
            )
    elif _socket_dir() is not None:
        PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)


def _as_postgres_ok(*test_args: str | Path) -> bool:
    """``test ARGS`` run as the postgres user."""
    cmd = ["runuser", "-u", "postgres", "--", "test", *map(str, test_args)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def _socket_dir() -> Path | None:
    """Unix socket directory, or None (TCP only) when the path would be too long."""
    if len(str(PG_SOCKET_DIR)) + len(f"/.s.PGSQL.{port('postgres')}") >= 100:
        return None
    return PG_SOCKET_DIR


def _pg_pid() -> int | None:
    """The postmaster pid from data/postmaster.pid, if that process is a live postgres."""
    pid = _read_pid(PG_DATA / "postmaster.pid")
    if pid is None:
        # The data dir may be unreadable (root-owned run as non-root etc.): fall back to ours.
        pid = _read_pid(_pid_file("postgres"))
    return pid if pid is not None and _pid_alive(pid, CMDLINE_HINT["postgres"]) else None


def _pg_ready(bindir: Path | None, p: int) -> bool:
    try:
        tool = _pg_tool(bindir, "pg_isready")
    except DevstackError:
        return _port_open(p)
    proc = subprocess.run(
        [tool, "-q", "-h", HOST, "-p", str(p), "-U", "postgres", "-d", "postgres", "-t", "2"],
        env=_clean_env(),
        capture_output=True,
    )
    return proc.returncode == 0


def _pg_running() -> bool:
    return _pg_pid() is not None and _pg_ready(
        _pg_bindir(install=False), _started_port("postgres") or port("postgres")
    )


def _psql(bindir: Path | None, p: int, sql: str, db: str = "postgres") -> str:
    cmd = [
        _pg_tool(bindir, "psql"),
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        HOST,
        "-p",
        str(p),
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
    ]
    return _run(cmd, "psql").stdout.strip()


def _pg_bootstrap(bindir: Path | None, p: int) -> None:
    """Create role and database ``tapewire`` if missing."""
    have = _psql(
        bindir,
        p,
        f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{PG_USER}') || ',' || "
        f"(SELECT count(*) FROM pg_database WHERE datname = '{PG_DB}')",
    )
    has_role, has_db = (x == "1" for x in have.split(","))
    if not has_role:
        _psql(bindir, p, f'CREATE ROLE "{PG_USER}" LOGIN SUPERUSER')
    if not has_db:
        _psql(bindir, p, f'CREATE DATABASE "{PG_DB}" OWNER "{PG_USER}"')


def _pg_up() -> None:
    p = port("postgres")
    bindir = _pg_bindir(install=False)
    pid = _pg_pid()
    if pid is not None:
        _check_same_port("postgres", pid)
        _wait_until(
            "postgres",
            lambda: _pg_ready(bindir, p),
            lambda: _pg_pid() is not None,
            _log_file("postgres"),
            START_TIMEOUT["postgres"],
        )
        _pg_bootstrap(bindir, p)
        return
    if _port_open(p):
        raise _port_taken_error("postgres")
    bindir = _pg_bindir(install=True)
    assert bindir is not None
    _pg_prepare_dirs()
    env = dict(_clean_env(), LC_ALL="C")
    if not (PG_DATA / "PG_VERSION").exists():
        if PG_DATA.exists():
            shutil.rmtree(PG_DATA)  # left over from an interrupted initdb
        _log(f"initdb {PG_DATA.relative_to(ROOT)} ({bindir.parent.name})")
        _run(
            _pg_as_owner(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(PG_DATA),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            ),
            "initdb",
            cwd=PG_DIR,
            env=env,
        )
    else:
        stale = PG_DATA / "postmaster.pid"
        if stale.exists():
            # Not a live postgres (checked above): e.g. a pid reused after a reboot.
            stale.unlink()
    log_path = _log_file("postgres")
    _rotate_log(log_path)
    log_path.touch()
    if _is_root():
        pw = pwd.getpwnam("postgres")
        os.chown(log_path, pw.pw_uid, pw.pw_gid)
    sock = _socket_dir()
    opts = [
        "-p",
        str(p),
        "-c",
        f"listen_addresses={HOST}",
        "-c",
        "max_connections=200",
        "-c",
        f"unix_socket_directories={sock if sock is not None else ''}",
    ]
    _log(f"starting postgres on {HOST}:{p}")
    pg_ctl = _pg_as_owner(
        [
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(START_TIMEOUT["postgres"])),
            "-D",
            str(PG_DATA),
            "-l",
            str(log_path),
            "-o",
            shlex.join(opts),
        ]
    )
    proc = subprocess.run(
        pg_ctl,
        cwd=PG_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    if proc.returncode != 0:
        raise DevstackError(
            f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout.strip()}\n{_log_tail(log_path)}"
        )
    pid = _read_pid(PG_DATA / "postmaster.pid")
    if pid is not None:
        _pid_file("postgres").write_text(f"{pid}\n{p}\n")
    _wait_until(
        "postgres",
        lambda: _pg_ready(bindir, p),
        lambda: _pg_pid() is not None,
        log_path,
        START_TIMEOUT["postgres"],
    )
    _pg_bootstrap(bindir, p)


def _pg_down(wipe: bool) -> None:
    pid = _pg_pid()
    if pid is not None:
        _log(f"stopping postgres (pid {pid})")
        # SIGINT is PostgreSQL's "fast" shutdown (SIGTERM waits for clients to leave).
        _stop_pid("postgres", pid, sig=signal.SIGINT)
    _pid_file("postgres").unlink(missing_ok=True)
    if wipe and PG_DIR.exists():
        shutil.rmtree(PG_DIR)


# --------------------------------------------------------------------------- public API

_UP = {"kafka": _kafka_up, "redis": _redis_up, "postgres": _pg_up}
_DOWN = {"kafka": _kafka_down, "redis": _redis_down, "postgres": _pg_down}
_RUNNING = {"kafka": _kafka_running, "redis": _redis_running, "postgres": _pg_running}
_PID = {"kafka": _kafka_pid, "redis": _redis_pid, "postgres": _pg_pid}


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up/down across processes (e.g. two pytest sessions)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("another devstack is working; waiting for its lock")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_up(*, quiet: bool = False) -> dict[str, str]:
    """Start whatever local server is missing; return the three variables.

    Servers named by an environment variable (other than our own address) are
    left alone. Idempotent and safe to call from several processes at once.
    Progress goes to stderr unless ``quiet``; the variables are only returned
    (``os.environ`` is not changed). Raises :class:`DevstackError` when a
    server cannot be installed or started.
    """
    global _quiet
    previous, _quiet = _quiet, quiet
    try:
        with _locked():
            for service in SERVICES:
                if external_value(service) is None:
                    _UP[service]()
    finally:
        _quiet = previous
    return env_vars()


def status() -> dict[str, str]:
    """``{"kafka": "running" | "stopped" | "external", ...}`` (nothing is started)."""
    out = {}
    for service in SERVICES:
        if external_value(service) is not None:
            out[service] = "external"
        else:
            out[service] = "running" if _RUNNING[service]() else "stopped"
    return out


def down(wipe: bool = False) -> None:
    """Stop the servers devstack started; with ``wipe`` also delete their data.

    The downloaded Kafka jars (.local/kafka/libs) are kept either way.
    """
    with _locked():
        errors = []
        for service in reversed(SERVICES):
            try:
                _DOWN[service](wipe)
            except DevstackError as e:
                errors.append(str(e))
        if errors:
            raise DevstackError("\n".join(errors))


CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def ensure_chromium() -> str:
    """The path of a Chromium for the browser tests: the system's, else Debian's package.

    Playwright drives it through `executable_path`; its own browser download is never used
    (it needs the internet and pins a build the distribution does not patch).
    """
    for name in CHROMIUM_CANDIDATES:
        if found := shutil.which(name):
            return found
    _apt_install("chromium")
    if found := shutil.which("chromium"):
        return found
    raise DevstackError("apt-get installed chromium but no chromium binary was found")


def _exports(values: dict[str, str], dotenv: bool) -> str:
    if dotenv:
        return "".join(f"{k}={v}\n" for k, v in values.items())
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def _print_status() -> None:
    for service, state in status().items():
        detail = ""
        if state == "external":
            detail = f" ({URL_ENV[service]}={external_value(service)})"
        elif state == "running":
            pid, where = _PID[service](), local_value(service)
            listening = _started_port(service)
            if listening is not None and listening != port(service):
                where = f"on port {listening}, not {PORT_ENV[service]}={port(service)}"
            detail = f" (pid {pid}, {where})"
        print(f"{service}: {state}{detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="devstack",
        description="Local Kafka, Redis and PostgreSQL for tapewire (data under .local/, no Docker).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start missing servers (idempotent) and print export lines")
    p_env = sub.add_parser("env", help="print the export lines without starting anything")
    p_env.add_argument("--dotenv", action="store_true", help="print KEY=VALUE lines instead")
    p_down = sub.add_parser("down", help="stop the servers devstack started")
    p_down.add_argument("--wipe", action="store_true", help="also delete their data (Kafka jars are kept)")
    sub.add_parser("status", help="one line per server: running / stopped / external")
    sub.add_parser("chromium", help="install Chromium for the browser tests if missing; print its path")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            started = time.monotonic()
            values = ensure_up()
            _log(f"ready in {time.monotonic() - started:.1f}s")
            sys.stdout.write(_exports(values, dotenv=False))
        elif args.command == "env":
            sys.stdout.write(_exports(env_vars(), dotenv=args.dotenv))
        elif args.command == "down":
            down(wipe=args.wipe)
        elif args.command == "status":
            _print_status()
        elif args.command == "chromium":
            print(ensure_chromium())
    except (DevstackError, OSError) as e:
        print(f"devstack: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
