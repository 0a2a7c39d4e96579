"""`python -m services.dashboard_api`: read the settings, configure logging, serve."""

from __future__ import annotations

import signal
from types import FrameType

from tapewire.logs import configure_logging

from .server import build_server
from .settings import DashboardApiSettings


def main() -> None:
    settings = DashboardApiSettings()
    configure_logging("dashboard_api", settings.log.log_level)
    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal against the
    # handlers that were there before it started. Make those no-ops: a clean shutdown then exits
    # 0, as every other service does, instead of dying of the signal it already handled.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _already_handled)
    build_server(settings).run()


def _already_handled(_signum: int, _frame: FrameType | None) -> None:
    pass


if __name__ == "__main__":
    main()
