"""Every open session, WebSocket or gRPC: what operators list and disconnect, what shutdown and
drain close."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..metrics import DashboardApiMetrics
from .session import CLOSE_SERVICE_RESTART, Session

log = logging.getLogger(__name__)


class Sessions:
    def __init__(self, metrics: DashboardApiMetrics) -> None:
        self._metrics = metrics
        self._open: dict[str, Session] = {}
        self.draining = False

    def __len__(self) -> int:
        return len(self._open)

    def add(self, session: Session) -> None:
        self._open[session.info.connection_id] = session
        self._metrics.sessions.labels(session.info.transport).inc()

    def discard(self, session: Session) -> None:
        if self._open.pop(session.info.connection_id, None) is not None:
            self._metrics.sessions.labels(session.info.transport).dec()

    def get(self, connection_id: str) -> Session | None:
        return self._open.get(connection_id)

    def all(self) -> list[Session]:
        return list(self._open.values())

    async def close_all(self, code: int, reason: str, timeout_s: float) -> None:
        """Close every session with `code`; wait up to `timeout_s` for them to be gone."""
        closing = self.all()
        if not closing:
            return
        log.info("closing sessions", extra={"count": len(closing), "code": code})
        for session in closing:
            session.request_close(code, reason)
        await _wait_finished(closing, timeout_s)

    async def drain(self, period_s: float) -> int:
        """Stop taking sessions and close the open ones (1012) evenly over `period_s`, so that
        their clients reconnect to other instances without all arriving at once."""
        self.draining = True
        closing = self.all()
        log.warning("draining", extra={"sessions": len(closing), "period_s": period_s})
        pause = period_s / len(closing) if closing else 0.0
        for session in closing:
            session.request_close(CLOSE_SERVICE_RESTART, "instance draining: reconnect and resume")
            if pause:
                await asyncio.sleep(pause)
        await _wait_finished(closing, 5.0)
        return len(closing)


async def _wait_finished(sessions: list[Session], timeout_s: float) -> None:
    waits = [asyncio.create_task(session.finished.wait()) for session in sessions]
    _, pending = await asyncio.wait(waits, timeout=timeout_s)
    for task in pending:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)
