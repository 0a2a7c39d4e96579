"""Run the containers' health checks, which podman cannot schedule without systemd.

podman runs a container's HEALTHCHECK from a systemd timer; with no systemd it logs "unable to
get systemd connection to add healthchecks" and every container stays "starting", so compose's
``depends_on: condition: service_healthy`` would wait for ever. ``podman healthcheck run`` does
one check and records its result, exactly what the timer would do: this runs it for every
container that has a health check, every INTERVAL_S.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

INTERVAL_S = 2.0
CHECK_TIMEOUT_S = 30.0


def containers_with_health() -> list[str]:
    ids: list[str] = []
    for state in ("starting", "healthy", "unhealthy"):
        proc = subprocess.run(
            ["podman", "ps", "--quiet", "--filter", f"health={state}"], capture_output=True, text=True
        )
        ids += proc.stdout.split()
    return ids


def check(container_id: str) -> None:
    # A check that hangs past its own timeout is counted as failed by podman itself.
    with contextlib.suppress(subprocess.TimeoutExpired):
        command = ["podman", "healthcheck", "run", container_id]
        subprocess.run(command, capture_output=True, timeout=CHECK_TIMEOUT_S)


def run_rounds(stop: threading.Event) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        while not stop.is_set():
            list(pool.map(check, containers_with_health()))
            stop.wait(INTERVAL_S)


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
        self._thread.join(timeout=CHECK_TIMEOUT_S + INTERVAL_S)
