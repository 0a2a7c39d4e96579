"""The hostile-input suite: what a hostile or careless user can send, against real servers.

Every module here probes one class of hostile input (absurd but parseable ticks, reconnect
storms, idle sockets, forged keys, bad resume positions, malformed headers, ...) against the
services running on the real Kafka, Redis and PostgreSQL, and checks that the pipeline keeps
flowing and that the answer is a clear refusal, never a crash or a stall.
"""

from __future__ import annotations

# The dashboard_api fixtures are the integration suite's own.
from tests.integration.conftest import cache, dashboard_settings

__all__ = ["cache", "dashboard_settings"]
