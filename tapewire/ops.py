"""The ops endpoint every worker service serves: GET /metrics (Prometheus) and GET /healthz."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class OpsServer:
    """A tiny HTTP server on its own thread. `healthy` decides /healthz (200 or 503)."""

    def __init__(
        self,
        host: str,
        port: int,
        healthy: Callable[[], bool],
        registry: CollectorRegistry,
    ) -> None:
        self._healthy = healthy
        self._registry = registry
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(ops._registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = ops._healthy()
                    self._reply(
                        200 if ok else 503,
                        b'{"status":"ok"}' if ok else b'{"status":"unhealthy"}',
                        "application/json",
                    )
                else:
                    self._reply(404, b'{"error":"not found"}', "application/json")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the service's own logs

        return Handler


def serve_ops(
    host: str, port: int, healthy: Callable[[], bool], registry: CollectorRegistry
) -> OpsServer | None:
    """Start the ops endpoint on its own thread; None when `port` is 0 (disabled)."""
    return OpsServer(host, port, healthy, registry).start() if port else None
