"""Run the containers' health checks, which podman cannot schedule without systemd.

podman runs a container's HEALTHCHECK from a systemd timer; with no systemd it logs "unable to
get systemd connection to add healthchecks" and every container stays "starting", so compose's
``depends_on: condition: service_healthy`` would wait for ever. ``podman healthcheck run`` does
one check and records its result, exactly what the timer would do: this runs it for every
container that has a health check, at the check's own interval, and every START_INTERVAL_S
while the container is still starting (Docker's ``start_interval`` does the same), so that a
`compose up --wait` is not held back a whole interval by a service that is already up.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

TICK_S = 0.5
START_INTERVAL_S = 2.0
DEFAULT_INTERVAL_S = 30.0  # Docker's, for a check that names none
CHECK_TIMEOUT_S = 60.0


def containers_with_health() -> dict[str, str]:
    """Running containers that have a health check -> their health (starting, healthy...)."""
    proc = subprocess.run(
        ["podman", "ps", "--format", "{{.ID}}\t{{.Status}}"], capture_output=True, text=True, check=False
    )
    return parse_ps(proc.stdout)


def parse_ps(stdout: str) -> dict[str, str]:
    """``podman ps --format '{{.ID}}<tab>{{.Status}}'`` -> the health of those that have one."""
    found = {}
    for line in stdout.splitlines():
        container_id, _, status = line.partition("\t")
        for health in ("starting", "unhealthy", "healthy"):
            if status.endswith(f"({health})"):
                found[container_id] = health
                break
    return found


def interval_s(container_id: str) -> float:
    proc = subprocess.run(
        ["podman", "inspect", "--format", "{{json .Config.Healthcheck}}", container_id],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        nanoseconds = int(json.loads(proc.stdout).get("Interval") or 0)
    except (ValueError, AttributeError):
        nanoseconds = 0
    return nanoseconds / 1e9 if nanoseconds > 0 else DEFAULT_INTERVAL_S


def next_check_s(interval: float, health: str) -> float:
    """Seconds to the next check: its interval, or less while the container is starting."""
    return min(interval, START_INTERVAL_S) if health == "starting" else interval


def check(container_id: str) -> None:
    # A check that hangs past its own timeout is counted as failed by podman itself.
    with contextlib.suppress(subprocess.TimeoutExpired):
        command = ["podman", "healthcheck", "run", container_id]
        subprocess.run(command, capture_output=True, timeout=CHECK_TIMEOUT_S)


def run_rounds(stop: threading.Event) -> None:
    intervals: dict[str, float] = {}
    due: dict[str, float] = {}
    running: dict[str, Future[None]] = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        while not stop.is_set():
            now = time.monotonic()
            for container_id, health in containers_with_health().items():
                if container_id in running and not running[container_id].done():
                    continue
                if container_id not in intervals:
                    intervals[container_id] = interval_s(container_id)
                if due.get(container_id, now) <= now:
                    due[container_id] = now + next_check_s(intervals[container_id], health)
                    running[container_id] = pool.submit(check, container_id)
            stop.wait(TICK_S)


def run_forever() -> None:
    run_rounds(threading.Event())


class HealthChecks:
    """``with HealthChecks():`` runs the checks in a background thread for the block's length."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run_rounds, args=(self._stop,), name="health", daemon=True)

    def __enter__(self) -> HealthChecks:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=CHECK_TIMEOUT_S + TICK_S)
