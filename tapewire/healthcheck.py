"""``python -m tapewire.healthcheck URL``: exit 0 when URL answers 2xx within TIMEOUT_S, else 1.

The tapewire containers' health check in compose.yaml. A module rather than an inline
``python -c "..."``: the Docker-compatible API of podman 4 (Debian 12's) splits a health
check's arguments on whitespace (containers/podman#26519, fixed upstream by #27818), so every
argument must be a single word.
Only loopback HTTP is checked: the service's own /healthz or /readyz.
"""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 2.0
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is an answer, not health: it stays a 3xx


# Straight to the service: containers inherit the host's http_proxy, which would answer instead.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def check(url: str, timeout_s: float = TIMEOUT_S) -> str | None:
    """None when ``url`` answers 2xx, else why not."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
        return f"not a loopback http URL: {url!r}"
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (OSError, ValueError, http.client.HTTPException) as e:
        return f"{url}: {e!r}"
    return None if 200 <= status < 300 else f"{url} answered {status}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tapewire.healthcheck http://127.0.0.1:PORT/PATH", file=sys.stderr)
        return 2
    problem = check(args[0])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
