"""gRPC `tapewire.v1.Ingest/Push`: internal services push their own ticks into the ingester's queue.

"Accepted" means "will be published or reported failed". Each tick is checked with
`tapewire.ticks.from_proto`, the check every source's ticks pass (and the processor's), and
encoded once, here, into the record the publisher will produce (records.py): a tick that breaks
a rule, cannot be encoded or would make too large a record is rejected with a code, and only
then is the record queued, under the same policy as the built-in source's ticks. The queue
stamps `ingest_time_ns` when it accepts a tick; a client's own value is ignored. A rejected tick
does not end the stream: it is counted, and the first `MAX_REJECTIONS` are described in the
`PushSummary` the client gets when it closes its side.

Each stream's records carry its `StreamReceipt`, on which the publisher reports every record's
outcome. When the client closes its side, the stream waits (at most `ack_timeout_s`) until all
of its accepted ticks are published, failed or dropped (`drop_oldest`), so that the summary says
which; what has no verdict by then is reported as unconfirmed.

Backpressure: when the queue is full under `block`, the put waits in a worker thread and the
stream awaits it, so the event loop keeps serving every other stream while this one stops reading
its client, whom HTTP/2 flow control then slows down. The wait is taken in short slices so that a
cancelled stream (client gone, shutdown grace over) stops waiting, and adding, soon after.
Under `drop_oldest` a put never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from functools import partial

import grpc
import grpc.aio

from services.ingester.metrics import IngesterMetrics
from services.ingester.queue import BoundedQueue, QueueClosed, QueueFull
from services.ingester.receipts import StreamReceipt
from services.ingester.records import Record, Unpublishable, encode, report_dropped
from services.ingester.sources.replay import INVALID_TICK
from tapewire.errors import InvalidTick, KafkaFailure
from tapewire.grpc_server import current_principal
from tapewire.reference.instrument import Instrument, InvalidInstrument
from tapewire.reference.instrument import from_proto as instrument_from_proto
from tapewire.ticks import from_proto
from tapewire.v1 import ingest_pb2, ingest_pb2_grpc, market_pb2

log = logging.getLogger(__name__)

GRPC_SOURCE = "grpc"  # the `source` label of pushed ticks in the metrics
MAX_REJECTIONS = 100  # described in a summary; the count covers them all
INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name

PushContext = grpc.aio.ServicerContext[market_pb2.Tick, ingest_pb2.PushSummary]
InstrumentsContext = grpc.aio.ServicerContext[
    ingest_pb2.PutInstrumentsRequest, ingest_pb2.PutInstrumentsResponse
]
MAX_INSTRUMENTS_PER_PUT = 10_000
INVALID_INSTRUMENT = "invalid_instrument"


class PushTally:
    """What one stream's ticks came to: the counts, the first rejections, and the receipt that
    the publisher reports the accepted ones' outcomes on."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self._rejections: list[ingest_pb2.Rejection] = []
        self.receipt = StreamReceipt()

    @property
    def position(self) -> int:
        """The index in the stream, from 0, of the tick being taken."""
        return self.accepted + self.rejected

    def accept(self) -> None:
        self.accepted += 1

    def reject(self, code: str, reason: str) -> None:
        if len(self._rejections) < MAX_REJECTIONS:
            self._rejections.append(ingest_pb2.Rejection(index=self.position, code=code, reason=reason))
        self.rejected += 1

    def summary(self) -> ingest_pb2.PushSummary:
        outcomes = self.receipt.outcomes()
        return ingest_pb2.PushSummary(
            accepted=self.accepted,
            rejected=self.rejected,
            rejections=self._rejections,
            published=outcomes.published,
            failed=outcomes.failed,
            dropped=outcomes.dropped,
            # Never negative: a verdict can arrive between reading the counts and `accepted`.
            unconfirmed=max(0, self.accepted - outcomes.published - outcomes.failed - outcomes.dropped),
            failures=[
                ingest_pb2.Rejection(index=f.index, code=f.code, reason=f.reason) for f in outcomes.failures
            ],
        )


class IngestService(ingest_pb2_grpc.IngestServicer):
    """The Push handler; `waiter` runs the puts that must wait for room (one thread per waiting stream)."""

    def __init__(
        self,
        queue: BoundedQueue[Record],
        metrics: IngesterMetrics,
        waiter: Executor,
        *,
        max_record_bytes: int,
        ack_timeout_s: float,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        wait_slice_s: float = 0.25,
        publish_reference: Callable[[list[Instrument]], int] | None = None,
    ) -> None:
        self._publish_reference = publish_reference
        self._queue = queue
        self._metrics = metrics
        self._accepted_metric = metrics.accepted_from(GRPC_SOURCE)
        self._waiter = waiter
        self._max_record_bytes = max_record_bytes
        self._ack_timeout_s = ack_timeout_s
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
            await self._await_outcomes(tally)
        finally:
            self._metrics.grpc_streams.dec()
        summary = tally.summary()
        self._log_end(summary)
        return summary

    async def PutInstruments(
        self, request: ingest_pb2.PutInstrumentsRequest, context: InstrumentsContext
    ) -> ingest_pb2.PutInstrumentsResponse:
        """Entries of the instrument master, each validated as a reference file's line; the
        valid ones are published (and acknowledged by Kafka) even when others are not."""
        if self._publish_reference is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "this ingester does not publish reference data"
            )
        # Reference data changes how every service reads an instrument: an operator's call, as
        # dashboard_api's admin endpoints are (with auth off, the anonymous caller is admin).
        if not current_principal().is_admin:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "PutInstruments needs the admin role")
        if len(request.instruments) > MAX_INSTRUMENTS_PER_PUT:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.instruments)} instruments in one request; at most {MAX_INSTRUMENTS_PER_PUT}",
            )
        valid: list[Instrument] = []
        rejections: list[ingest_pb2.Rejection] = []
        for index, message in enumerate(request.instruments):
            try:
                valid.append(instrument_from_proto(message))
            except InvalidInstrument as exc:
                if len(rejections) < MAX_REJECTIONS:
                    rejections.append(
                        ingest_pb2.Rejection(index=index, code=INVALID_INSTRUMENT, reason=str(exc))
                    )
        assert self._publish_reference is not None
        try:
            published = await asyncio.to_thread(self._publish_reference, valid) if valid else 0
        except KafkaFailure as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"not published: {exc}")
        log.info(
            "instruments put",
            extra={"published": published, "rejected": len(request.instruments) - len(valid)},
        )
        return ingest_pb2.PutInstrumentsResponse(published=published, rejections=rejections)

    async def _take(self, message: market_pb2.Tick, tally: PushTally, context: PushContext) -> None:
        record = self._admit(message, tally)
        if record is None:
            return
        try:
            displaced = await self._enqueue(record)
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
            report_dropped(displaced)

    def _admit(self, message: market_pb2.Tick, tally: PushTally) -> Record | None:
        """The tick as a record ready to publish, or None when it is rejected (counted and described)."""
        try:
            tick = from_proto(message, self._wall_clock_ns())
            return encode(tick, self._max_record_bytes, tally.receipt, tally.position)
        except InvalidTick as exc:
            self._reject(tally, INVALID_TICK, str(exc))
        except Unpublishable as exc:
            self._reject(tally, exc.code, str(exc))
        return None

    def _reject(self, tally: PushTally, code: str, reason: str) -> None:
        tally.reject(code, reason)
        self.rejected += 1
        self._metrics.invalid(code, GRPC_SOURCE)

    async def _enqueue(self, record: Record) -> Record | None:
        """Put `record` in the queue (what it displaced, if anything), waiting off the event loop if full."""
        try:
            return self._queue.put(record, timeout_s=0)
        except QueueFull:
            pass
        loop = asyncio.get_running_loop()
        while True:
            try:
                return await loop.run_in_executor(
                    self._waiter, partial(self._queue.put, record, self._wait_slice_s)
                )
            except QueueFull:
                continue  # awaiting again is where a cancelled stream stops

    async def _await_outcomes(self, tally: PushTally) -> None:
        """Wait until every accepted tick of the stream has an outcome, or `ack_timeout_s` passed."""
        loop = asyncio.get_running_loop()
        settled = asyncio.Event()

        def wake() -> None:  # runs on a publisher thread, or here
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
                loop.call_soon_threadsafe(settled.set)

        tally.receipt.close(tally.accepted, wake)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), self._ack_timeout_s)

    def _log_end(self, summary: ingest_pb2.PushSummary) -> None:
        fields = {
            "user": current_principal().user_id,
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            "published": summary.published,
            "failed": summary.failed,
            "dropped": summary.dropped,
            "unconfirmed": summary.unconfirmed,
        }
        if summary.rejected:
            first = summary.rejections[0]
            log.warning(
                f"push stream ended with {summary.rejected} ticks rejected; first, at {first.index}: "
                f"{first.reason}",
                extra=fields,
            )
        elif summary.failed or summary.unconfirmed:
            log.warning("push stream ended with ticks not published", extra=fields)
        else:
            log.info("push stream ended", extra=fields)
