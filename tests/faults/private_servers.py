"""Servers of a test's own that it may stop, kill and start again: a private Kafka broker.

The broker is the one `tools/devstack` runs (the same jars, the same server.properties, the
same heap), on two free ports and a data directory of the test's own, so stopping it touches
no other test and no running `make run`. Its data survives `stop()`/`kill()` and `start()`:
the topics, the records and the producers' state come back, as after a real broker restart.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from tests.support import wait_for
from tools.devstack import (
    KAFKA_LIBS,
    LOG4J2_PROPERTIES,
    kafka_format_command,
    kafka_new_cluster_id,
    kafka_properties,
    kafka_ready,
    kafka_server_command,
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


class PrivateKafka:
    """A single-node KRaft broker (broker and controller in one process) in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.port, self.controller_port = free_ports(2)
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
        self._config.write_text(kafka_properties(self.port, self.controller_port, self._data))
        formatted = subprocess.run(
            kafka_format_command(self._config, kafka_new_cluster_id(), self._log4j),
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
def private_kafka(directory: Path) -> Iterator[PrivateKafka]:
    """A started `PrivateKafka` in `directory`, killed on exit (its data is left for inspection)."""
    broker = PrivateKafka(directory)
    try:
        yield broker.start()
    finally:
        broker.kill()
