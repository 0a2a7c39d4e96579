"""The Ingest gRPC server on a thread of its own, with its own event loop, beside the pipeline.

The pipeline is threads around a thread-safe queue; gRPC is asyncio. So the server runs its event
loop on the "ingester-grpc" thread and feeds the same `BoundedQueue` as the source thread does
(see push.py for how a full queue is waited on without blocking that loop). `start` returns once
the server listens, or raises `ConfigurationError` when it cannot (port taken, bad host);
`stop` stops taking new streams, lets running ones finish within the grace period, and returns
when the server is down. It is called by the pipeline before the queue closes, so no push is cut
off by a closed queue while the grace period lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from services.ingester.metrics import IngesterMetrics
from services.ingester.push import GRPC_SOURCE, INGEST_SERVICE, IngestService
from services.ingester.queue import BoundedQueue
from services.ingester.records import REASONS, Record
from services.ingester.settings import IngesterSettings
from services.ingester.sources.replay import INVALID_TICK
from tapewire.auth import TokenVerifier
from tapewire.errors import ConfigurationError
from tapewire.grpc_server import Service, start_grpc_server
from tapewire.reference import master as reference_master
from tapewire.v1 import ingest_pb2_grpc

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0
# Beyond the grace period, how long stopping may take for the server to cancel what is left.
STOP_MARGIN_S = 5.0


class GrpcIngress:
    """The Ingest service: `start()`, then `stop()` (idempotent, from any thread)."""

    def __init__(
        self,
        settings: IngesterSettings,
        queue: BoundedQueue[Record],
        metrics: IngesterMetrics,
        verifier: TokenVerifier | None,
    ) -> None:
        self._settings = settings
        self._verifier = verifier
        metrics.declare_source(GRPC_SOURCE, (INVALID_TICK, *REASONS))
        # One thread per stream waiting for room in a full queue; never more than the streams.
        self._waiter = ThreadPoolExecutor(settings.grpc_max_streams, thread_name_prefix="ingester-push-wait")
        self._service = IngestService(
            queue,
            metrics,
            self._waiter,
            max_record_bytes=settings.max_record_bytes,
            ack_timeout_s=settings.push_ack_timeout_s,
            publish_reference=partial(
                reference_master.publish,
                settings.kafka,
                settings.topics.instruments,
                timeout_s=settings.push_ack_timeout_s,
            ),
        )
        self._thread = threading.Thread(target=self._run, name="ingester-grpc", daemon=True)
        self._listening = threading.Event()
        self._startup_error: ConfigurationError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stop_lock = threading.Lock()
        self._stopping = False
        self.port = 0

    @property
    def accepted(self) -> int:
        return self._service.accepted

    @property
    def rejected(self) -> int:
        return self._service.rejected

    @property
    def failed(self) -> bool:
        """The server thread ended without being asked to."""
        return self._listening.is_set() and not self._thread.is_alive() and not self._stopping

    def start(self) -> GrpcIngress:
        self._thread.start()
        if not self._listening.wait(STARTUP_TIMEOUT_S):
            raise ConfigurationError(f"the gRPC server did not start within {STARTUP_TIMEOUT_S} s")
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop taking pushes: running streams get `grpc_shutdown_grace_s`, then are cancelled."""
        with self._stop_lock:
            if self._stopping:
                return
            self._stopping = True
            loop, stop_requested = self._loop, self._stop_requested
            if loop is not None and stop_requested is not None and self._thread.is_alive():
                with contextlib.suppress(RuntimeError):  # the loop has just ended by itself
                    loop.call_soon_threadsafe(stop_requested.set)
                self._thread.join(self._settings.grpc_shutdown_grace_s + STOP_MARGIN_S)
                if self._thread.is_alive():
                    log.warning("the gRPC server did not stop in time")
            self._waiter.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:
            log.exception("the gRPC server failed")
        finally:
            self._listening.set()  # never leave start() waiting

    async def _serve(self) -> None:
        service = Service(INGEST_SERVICE, self._service, ingest_pb2_grpc.add_IngestServicer_to_server)
        try:
            server = await start_grpc_server(self._settings.grpc_options(), [service], self._verifier)
        except ConfigurationError as exc:
            self._startup_error = exc
            return
        self._loop, self._stop_requested, self.port = asyncio.get_running_loop(), asyncio.Event(), server.port
        self._listening.set()
        await self._stop_requested.wait()
        await server.stop(self._settings.grpc_shutdown_grace_s)
        log.info("grpc stopped", extra={"accepted": self.accepted, "rejected": self.rejected})
