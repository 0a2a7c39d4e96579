"""gRPC `tapewire.v1.Ingest/Push`: internal services push their own ticks into the ingester's queue.

Each tick is checked with `tapewire.ticks.from_proto`, the check every source's ticks pass (and
the processor's), then queued under the same policy as the built-in source's ticks. The queue
stamps `ingest_time_ns` when it accepts a tick; a client's own value is ignored. A rejected tick
does not end the stream: it is counted, and the first `MAX_REJECTIONS` are described in the
`PushSummary` the client gets when it closes its side.

Backpressure: when the queue is full under `block`, the put waits in a worker thread and the
stream awaits it, so the event loop keeps serving every other stream while this one stops reading
its client, whom HTTP/2 flow control then slows down. The wait is taken in short slices so that a
cancelled stream (client gone, shutdown grace over) stops waiting, and adding, soon after.
Under `drop_oldest` a put never waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from functools import partial

import grpc
import grpc.aio

from services.ingester.metrics import IngesterMetrics
from services.ingester.queue import BoundedQueue, QueueClosed, QueueFull
from services.ingester.sources.replay import INVALID_TICK
from tapewire.errors import InvalidTick
from tapewire.grpc_server import current_principal
from tapewire.ticks import RawTick, from_proto
from tapewire.v1 import ingest_pb2, ingest_pb2_grpc, market_pb2

log = logging.getLogger(__name__)

GRPC_SOURCE = "grpc"  # the `source` label of pushed ticks in the metrics
MAX_REJECTIONS = 100  # described in a summary; the count covers them all
INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name

PushContext = grpc.aio.ServicerContext[market_pb2.Tick, ingest_pb2.PushSummary]


class PushTally:
    """What one stream's ticks came to: the counts and the first rejections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self._rejections: list[ingest_pb2.Rejection] = []

    def accept(self) -> None:
        self.accepted += 1

    def reject(self, code: str, reason: str) -> None:
        if len(self._rejections) < MAX_REJECTIONS:
            index = self.accepted + self.rejected  # the tick's position in the stream, from 0
            self._rejections.append(ingest_pb2.Rejection(index=index, code=code, reason=reason))
        self.rejected += 1

    def summary(self) -> ingest_pb2.PushSummary:
        return ingest_pb2.PushSummary(
            accepted=self.accepted, rejected=self.rejected, rejections=self._rejections
        )


class IngestService(ingest_pb2_grpc.IngestServicer):
    """The Push handler; `waiter` runs the puts that must wait for room (one thread per waiting stream)."""

    def __init__(
        self,
        queue: BoundedQueue[RawTick],
        metrics: IngesterMetrics,
        waiter: Executor,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        wait_slice_s: float = 0.25,
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self._accepted_metric = metrics.accepted_from(GRPC_SOURCE)
        self._waiter = waiter
        self._wall_clock_ns = wall_clock_ns
        self._wait_slice_s = wait_slice_s
        self.accepted = 0  # over every stream, for the run's summary
        self.rejected = 0

    async def Push(
        self, request_iterator: AsyncIterator[market_pb2.Tick], context: PushContext
    ) -> ingest_pb2.PushSummary:
        tally = PushTally()
        self._metrics.grpc_streams.inc()
        try:
            async for message in request_iterator:
                await self._take(message, tally, context)
        finally:
            self._metrics.grpc_streams.dec()
        self._log_end(tally)
        return tally.summary()

    async def _take(self, message: market_pb2.Tick, tally: PushTally, context: PushContext) -> None:
        try:
            tick = from_proto(message, self._wall_clock_ns())
        except InvalidTick as exc:
            tally.reject(INVALID_TICK, str(exc))
            self.rejected += 1
            self._metrics.invalid(INVALID_TICK, GRPC_SOURCE)
            return
        try:
            displaced = await self._enqueue(tick)
        except QueueClosed:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the ingester is shutting down: the first {tally.accepted} ticks of this stream "
                "were accepted, the rest were not",
            )
        tally.accept()
        self.accepted += 1
        self._accepted_metric.inc()
        if displaced is not None:
            self._metrics.queue_dropped.inc()

    async def _enqueue(self, tick: RawTick) -> RawTick | None:
        """Put `tick` in the queue (what it displaced, if anything), waiting off the event loop if full."""
        try:
            return self._queue.put(tick, timeout_s=0)
        except QueueFull:
            pass
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(
                    self._waiter, partial(self._queue.put, tick, self._wait_slice_s)
                )
            except QueueFull:
                continue  # awaiting again is where a cancelled stream stops

    def _log_end(self, tally: PushTally) -> None:
        fields = {"user": current_principal().user_id, "accepted": tally.accepted, "rejected": tally.rejected}
        if tally.rejected:
            first = tally.summary().rejections[0]
            log.warning(
                f"push stream ended with {tally.rejected} ticks rejected; first, at {first.index}: "
                f"{first.reason}",
                extra=fields,
            )
        else:
            log.info("push stream ended", extra=fields)
