"""The alert command path: a client's `alert.create`/`alert.cancel` -> an `AlertCommand` on Kafka.

A session hands a command over with `submit_create`/`submit_cancel`, which never wait: the
command goes into a bounded queue and the client is answered at once (`alert.accepted`), or
`Busy` is raised when the queue is full and the client gets the error `busy`. A burst of
commands, or a broker that is down, therefore costs at most `queue_size` commands of memory
and never holds up a connection.

A few worker tasks take commands from the queue and produce them with an idempotent, acks=all
producer (tapewire.kafka.producer_config), keyed by instrument so that a command lands on the
partition of that instrument's ticks and the processor applies it in order with them. Each
worker waits for its record's acknowledgement before taking the next, so the number of
commands in flight is bounded by the number of workers, and a command that is never
acknowledged (librdkafka gave up after `delivery.timeout.ms`) is reported to whoever
submitted it through `on_failed(alert_id, reason)`: the client was told "accepted" and must
now be told it was not. Commands reach librdkafka in the order they were submitted (and the
idempotent producer keeps that order per partition).

librdkafka's `produce()` does not block, but its delivery reports are only served by
`poll()`, which does. A dedicated thread sits in `poll()` (so reports are served the moment
they arrive) and hands each one back to the event loop with `call_soon_threadsafe`, where it
settles the future its worker is waiting on. When librdkafka's own buffer is full
(`BufferError`) the worker waits and tries again instead of dropping the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Literal, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tapewire import decimals
from tapewire.errors import TapewireError
from tapewire.kafka import producer_config
from tapewire.settings import KafkaSettings
from tapewire.v1 import alerts_pb2 as apb

from .requests import DIRECTION_TO_PROTO, Direction

log = logging.getLogger(__name__)

FailureCallback = Callable[[str, str], None]
"""Called on the event loop with (alert_id, reason) when an accepted command was not delivered."""

DeliveryCallback = Callable[[KafkaError | None, Message], None]

ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SHUTDOWN_REASON = "not sent: dashboard_api is shutting down"
UNCONFIRMED_REASON = "dashboard_api shut down before the broker acknowledged the command"


class Busy(TapewireError):
    """The command queue is full, or closing: nothing was queued."""


class ProducerLike(Protocol):
    """The part of `confluent_kafka.Producer` used here."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: DeliveryCallback) -> None: ...

    def poll(self, timeout: float) -> int: ...


class AlertCommandMetrics:
    """dashboard_api_alert_commands_total{result}, the queue depth and the acknowledgement time."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.commands = Counter(
            "dashboard_api_alert_commands_total",
            "Alert commands by outcome: queued (accepted), busy (refused, queue full), "
            "delivered (acknowledged by Kafka), failed (accepted but not delivered)",
            ["result"],
            registry=registry,
        )
        self.queued = self.commands.labels("queued")
        self.busy = self.commands.labels("busy")
        self.delivered = self.commands.labels("delivered")
        self.failed = self.commands.labels("failed")
        self.queue_depth = Gauge(
            "dashboard_api_alert_command_queue_depth",
            "Alert commands accepted and waiting for a worker",
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "dashboard_api_alert_command_ack_seconds",
            "From an alert command being accepted to Kafka acknowledging it",
            buckets=ACK_BUCKETS,
            registry=registry,
        )


def open_producer(
    kafka: KafkaSettings, client_id: str = "dashboard_api-commands", delivery_timeout_ms: int = 30_000
) -> Producer:
    """The commands producer: idempotent and acks=all. It connects in the background.

    A client was told its alert was accepted: if the broker cannot take it within
    `delivery_timeout_ms` (30 s, not the shared 2 minutes) it is better told so soon."""
    # librdkafka's own log lines go through `log` (served by the poll thread), not raw stderr.
    overrides: dict[str, Any] = {"delivery.timeout.ms": delivery_timeout_ms, "logger": log}
    return Producer(producer_config(kafka, client_id, **overrides))


def create_command(
    alert_id: str, user_id: str, instrument: str, direction: Direction, price: str, now_ns: int
) -> apb.AlertCommand:
    """The command that asks the processor to hold a new alert."""
    alert = apb.Alert(
        alert_id=alert_id,
        user_id=user_id,
        instrument=instrument,
        direction=DIRECTION_TO_PROTO[direction],
        price=price,
        created_ns=now_ns,
    )
    return apb.AlertCommand(create=alert, issued_ns=now_ns)


def cancel_command(alert_id: str, user_id: str, instrument: str, now_ns: int) -> apb.AlertCommand:
    """The command that asks the processor to drop an alert (only its creator's is honoured)."""
    cancel = apb.CancelAlert(alert_id=alert_id, user_id=user_id, instrument=instrument)
    return apb.AlertCommand(cancel=cancel, issued_ns=now_ns)


@dataclass(frozen=True, slots=True)
class _Pending:
    alert_id: str
    kind: Literal["create", "cancel"]
    key: bytes
    value: bytes
    on_failed: FailureCallback | None
    accepted_at: float  # monotonic


class AlertCommands:
    """Queues alert commands and produces them to `topic`; `start()` inside the event loop,
    `await stop(timeout_s)` to deliver what is queued before shutting down."""

    def __init__(
        self,
        producer: ProducerLike,
        topic: str,
        metrics: AlertCommandMetrics,
        queue_size: int = 1000,
        workers: int = 4,
        clock: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        buffer_full_wait_s: float = 0.01,
        poll_timeout_s: float = 0.1,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError("queue_size and workers must be at least 1")
        self._producer = producer
        self._topic = topic
        self._metrics = metrics
        self._workers = workers
        self._clock = clock
        self._new_id = new_id
        self._buffer_full_wait_s = buffer_full_wait_s
        self._poll_timeout_s = poll_timeout_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._handing_over = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: threading.Thread | None = None
        self._poller_done = threading.Event()
        self._closing = False

    @property
    def depth(self) -> int:
        """Commands accepted and not yet taken by a worker."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the workers and the delivery-report thread (from inside the event loop)."""
        if self._loop is not None:
            raise RuntimeError("AlertCommands already started")
        self._loop = asyncio.get_running_loop()
        self._poller = threading.Thread(target=self._serve_delivery_reports, name="alert-commands-poll")
        self._poller.daemon = True  # a stuck poll must not keep the process alive
        self._poller.start()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"alert-commands-{n}") for n in range(self._workers)
        ]

    def submit_create(
        self,
        user_id: str,
        instrument: str,
        direction: Direction,
        price: Decimal | str,
        on_failed: FailureCallback | None = None,
    ) -> str:
        """Queue the creation of an alert and return its new id; raise `Busy` when full."""
        alert_id = self._new_id()
        text = decimals.fmt(price) if isinstance(price, Decimal) else price
        command = create_command(alert_id, user_id, instrument, direction, text, self._clock())
        self._submit(alert_id, "create", instrument, command, on_failed)
        return alert_id

    def submit_cancel(
        self, user_id: str, alert_id: str, instrument: str, on_failed: FailureCallback | None = None
    ) -> None:
        """Queue the cancellation of an alert; raise `Busy` when full."""
        command = cancel_command(alert_id, user_id, instrument, self._clock())
        self._submit(alert_id, "cancel", instrument, command, on_failed)

    async def stop(self, timeout_s: float) -> None:
        """Refuse new commands, deliver the queued ones for up to `timeout_s`, then stop.

        Commands still queued at the deadline are dropped and those still waiting for an
        acknowledgement are given up on; both are reported to their `on_failed`."""
        if self._closing:
            return
        self._closing = True
        if self._tasks:
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                log.warning(
                    "alert commands not all delivered before shutdown",
                    extra={"queued": self._queue.qsize(), "timeout_s": timeout_s},
                )
        self._drop_queued()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._poller_done.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, max(1.0, 10 * self._poll_timeout_s))

    def _submit(
        self,
        alert_id: str,
        kind: Literal["create", "cancel"],
        instrument: str,
        command: apb.AlertCommand,
        on_failed: FailureCallback | None,
    ) -> None:
        if self._closing:
            self._metrics.busy.inc()
            raise Busy("dashboard_api is shutting down")
        pending = _Pending(
            alert_id=alert_id,
            kind=kind,
            key=instrument.encode(),
            value=command.SerializeToString(),
            on_failed=on_failed,
            accepted_at=time.monotonic(),
        )
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self._metrics.busy.inc()
            raise Busy(f"the alert command queue is full ({self._queue.maxsize}): try again later") from None
        self._metrics.queued.inc()
        self._metrics.queue_depth.set(self._queue.qsize())

    async def _work(self) -> None:
        while True:
            pending = await self._queue.get()
            self._metrics.queue_depth.set(self._queue.qsize())
            try:
                await self._deliver(pending)
            finally:
                self._queue.task_done()

    async def _deliver(self, pending: _Pending) -> None:
        acknowledged: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        handed_over = False
        try:
            # One worker at a time hands records over (the lock is fair): one that waits for
            # room holds the others back, so the records reach librdkafka in queue order.
            async with self._handing_over:
                while not self._produce(pending, acknowledged):
                    # librdkafka's queue is full: acknowledgements will make room.
                    await asyncio.sleep(self._buffer_full_wait_s)
            handed_over = True
            reason = await acknowledged
        except asyncio.CancelledError:
            self._failed(pending, UNCONFIRMED_REASON if handed_over else SHUTDOWN_REASON)
            raise
        if reason is None:
            self._metrics.delivered.inc()
            self._metrics.ack_seconds.observe(time.monotonic() - pending.accepted_at)
        else:
            self._failed(pending, reason)

    def _produce(self, pending: _Pending, acknowledged: asyncio.Future[str | None]) -> bool:
        """Hand the record to librdkafka; False when its queue has no room. A record it refuses
        outright settles `acknowledged` with the reason."""
        try:
            self._producer.produce(
                self._topic,
                value=pending.value,
                key=pending.key,
                on_delivery=partial(self._on_delivery, acknowledged),
            )
        except BufferError:
            return False
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            reason = error.str() if isinstance(error, KafkaError) else str(exc)
            _settle(acknowledged, f"kafka refused the command: {reason}")
        return True

    def _on_delivery(
        self, acknowledged: asyncio.Future[str | None], error: KafkaError | None, _: Any
    ) -> None:
        # On the poll thread: settle the worker's future on the event loop's thread.
        reason = None if error is None else error.str()
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle, acknowledged, reason)

    def _serve_delivery_reports(self) -> None:
        while not self._poller_done.is_set():
            try:
                self._producer.poll(self._poll_timeout_s)
            except Exception:  # a report must never kill the thread that serves them
                log.exception("serving kafka delivery reports failed")

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            self._queue.task_done()
            self._failed(pending, SHUTDOWN_REASON)
        self._metrics.queue_depth.set(0)

    def _failed(self, pending: _Pending, reason: str) -> None:
        self._metrics.failed.inc()
        log.warning(
            "alert command not delivered",
            extra={"alert_id": pending.alert_id, "command": pending.kind, "reason": reason},
        )
        if pending.on_failed is None:
            return
        try:
            pending.on_failed(pending.alert_id, reason)
        except Exception:
            log.exception("on_failed callback raised", extra={"alert_id": pending.alert_id})


def _settle(acknowledged: asyncio.Future[str | None], reason: str | None) -> None:
    if not acknowledged.done():
        acknowledged.set_result(reason)
