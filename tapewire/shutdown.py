"""Graceful shutdown: SIGTERM and SIGINT set an event the service loops watch."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


def install_stop_event() -> threading.Event:
    """Return an event set by the first SIGTERM/SIGINT; a second one exits at once."""
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second signal, exiting now", extra={"signal": signum})
            raise SystemExit(1)
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
