"""Waiting for a server the benchmark started to answer its health URL."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable


class NotReady(RuntimeError):
    pass


def wait_http_ok(
    url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True, what: str = ""
) -> None:
    """Until `url` answers 200; NotReady when the deadline passes or `alive()` says it exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise NotReady(f"{what or url} exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise NotReady(f"{what or url} not ready after {timeout_s}s")
