"""Wiring: source thread (and gRPC pushes) -> bounded queue -> publisher thread -> Kafka, and a
bounded graceful shutdown.

`serve` is the whole service (start-up checks, topic creation, the Kafka producer, the gRPC
Ingest service, the ops endpoint); `Pipeline` is the pipeline itself with every dependency
passed in, which is what the unit tests drive.

Shutdown, on the stop event or when the source runs out: the source stops; the gRPC service
takes no new streams and gives running ones `grpc_shutdown_grace_s` to finish; then the queue
closes, and the publisher drains it and librdkafka flushes, together within `shutdown_timeout_s`;
whatever is left is logged. The exit code is 0 unless ticks were lost (delivery failures, ticks
left at shutdown) or a part of the pipeline failed. Drops by the `drop_oldest` policy are by design
and do not change it.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from confluent_kafka import Producer
from prometheus_client import REGISTRY, CollectorRegistry

from services.ingester import records
from services.ingester.grpc_ingress import GrpcIngress
from services.ingester.metrics import IngesterMetrics
from services.ingester.publish import ProducerLike, Publisher, Throttled, serve_delivery_reports
from services.ingester.queue import BoundedQueue, QueueClosed
from services.ingester.records import Record, Unpublishable
from services.ingester.settings import IngesterSettings
from services.ingester.sources import InvalidRecord, InvalidRecordHandler, TickSource
from services.ingester.sources.idle import IdleSource
from services.ingester.sources.replay import REASONS, LineParser, ReplaySource
from services.ingester.sources.simulator import Market, SimulatorSource
from tapewire import tracing
from tapewire.auth import TokenVerifier
from tapewire.errors import ConfigurationError, KafkaFailure
from tapewire.kafka import ensure_topics, producer_config
from tapewire.ops import OpsServer
from tapewire.reference import master as reference_master
from tapewire.reference.instrument import Instrument, InvalidInstrument
from tapewire.settings import CHANGELOG_TOPIC_CONFIG, INSTRUMENTS_PARTITIONS
from tapewire.ticks import RawTick
from tapewire.tracing import DISABLED, Tracer

log = logging.getLogger(__name__)

CLIENT_ID = "tapewire-ingester"
EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


@dataclass(frozen=True, slots=True)
class RunResult:
    accepted: int  # from the source and over gRPC
    invalid: int  # source records skipped or refused, and pushed ticks rejected
    published: int
    delivery_failures: int
    dropped: int
    left: int
    failed: bool  # the source, the gRPC server or the producer broke down
    grpc_accepted: int = 0
    grpc_rejected: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failed or self.delivery_failures or self.left else EXIT_OK


class InvalidRecords:
    """The sources' `on_invalid` handler: one WARNING per record, and the counter."""

    def __init__(self, metrics: IngesterMetrics) -> None:
        self._metrics = metrics
        self.count = 0

    def __call__(self, record: InvalidRecord) -> None:
        self.count += 1
        self._metrics.invalid(record.reason)
        log.warning(
            f"{record.source} record {record.position} skipped ({record.reason}): {record.detail}",
            extra={"source": record.source, "line": record.position, "reason": record.reason},
        )


class Ingress(Protocol):
    """A way in for ticks besides the source (the gRPC service); stopped before the queue closes."""

    @property
    def accepted(self) -> int: ...

    @property
    def rejected(self) -> int: ...

    @property
    def failed(self) -> bool: ...

    def stop(self) -> None: ...


class _Feeder:
    """The source thread's job: encode the source's ticks and queue them until either ends.

    A tick that cannot be published (records.py) is counted as invalid and skipped, as an invalid
    record is. `on_end` runs when the source ends, for whatever reason (the pipeline then closes
    its inputs).
    """

    def __init__(
        self,
        source: TickSource,
        queue: BoundedQueue[Record],
        metrics: IngesterMetrics,
        max_record_bytes: int,
        on_end: Callable[[], None],
    ) -> None:
        self._source = source
        self._queue = queue
        self._metrics = metrics
        self._max_record_bytes = max_record_bytes
        self._on_end = on_end
        self._refusals = Throttled(log, interval_s=1.0)
        self.stop = threading.Event()
        self.accepted = 0
        self.refused = 0
        self.failed = False

    def run(self) -> None:
        try:
            for tick in self._source.read(self.stop):
                self._take(tick)
        except QueueClosed:
            pass  # shutting down: the tick in hand was never accepted
        except Exception:
            self.failed = True
            log.exception("the source failed", extra={"source": self._source.name})
        finally:
            self._on_end()

    def _take(self, tick: RawTick) -> None:
        try:
            record = records.encode(tick, self._max_record_bytes)
        except Unpublishable as exc:
            self._refuse(exc)
            return
        displaced = self._queue.put(record)
        if displaced is not None:
            self._metrics.queue_dropped.inc()
            records.report_dropped(displaced)
        self.accepted += 1
        self._metrics.accepted.inc()

    def _refuse(self, exc: Unpublishable) -> None:
        self.refused += 1
        self._metrics.invalid(exc.code)
        self._refusals.warning(
            "a tick of the source was refused",
            {"source": self._source.name, "reason": exc.code, "detail": str(exc)},
        )


def stamp_ingest_time(record: Record) -> Record:
    return records.stamped(record, time.time_ns())


def new_queue(settings: IngesterSettings) -> BoundedQueue[Record]:
    """The queue between the inputs and the publisher; it stamps `ingest_time_ns` on acceptance."""
    return BoundedQueue[Record](settings.queue_size, settings.queue_policy, stamp=stamp_ingest_time)


class Pipeline:
    """The three threads and the queue between them; `run` blocks until the pipeline has shut down.

    `ingress` (the gRPC service, started by the caller) feeds `queue` too, which must then be given.
    """

    def __init__(
        self,
        settings: IngesterSettings,
        source: TickSource,
        producer: ProducerLike,
        metrics: IngesterMetrics,
        invalid_records: InvalidRecords | None = None,
        queue: BoundedQueue[Record] | None = None,
        ingress: Ingress | None = None,
        tracer: Tracer = DISABLED,
    ) -> None:
        self._settings = settings
        self._source = source
        self._producer = producer
        self._invalid_records = invalid_records
        self._queue = queue if queue is not None else new_queue(settings)
        self._ingress = ingress
        metrics.track_queue_depth(lambda: self._queue.depth)
        self._feeder = _Feeder(
            source, self._queue, metrics, settings.max_record_bytes, on_end=self._close_inputs
        )
        self._publisher = Publisher(producer, settings.topics.raw, self._queue, metrics, tracer=tracer)
        self._reports_done = threading.Event()
        self._threads = {
            "source": threading.Thread(target=self._feeder.run, name="ingester-source", daemon=True),
            "publisher": threading.Thread(target=self._publisher.run, name="ingester-publisher", daemon=True),
            "reports": threading.Thread(
                target=serve_delivery_reports,
                args=(producer, self._reports_done),
                name="ingester-reports",
                daemon=True,
            ),
        }

    def healthy(self) -> bool:
        """Healthy while the publisher thread runs (and the gRPC server, if any, has not failed)."""
        return self._threads["publisher"].is_alive() and not self._ingress_failed()

    def _ingress_failed(self) -> bool:
        return self._ingress is not None and self._ingress.failed

    def run(self, stop: threading.Event) -> RunResult:
        """Run until the source ends or `stop` is set, then shut down within `shutdown_timeout_s`."""
        log.info(
            "ingesting",
            extra={
                "source": self._source.name,
                "topic": self._settings.topics.raw,
                "queue_size": self._settings.queue_size,
                "queue_policy": self._settings.queue_policy,
            },
        )
        for thread in self._threads.values():
            thread.start()
        # Wake when the publisher ends (input exhausted and drained) or, within 0.1 s, on `stop`.
        while self.healthy() and not stop.is_set():
            self._threads["publisher"].join(0.1)
        left = self._shut_down(self._settings.shutdown_timeout_s)
        grpc_accepted = self._ingress.accepted if self._ingress else 0
        grpc_rejected = self._ingress.rejected if self._ingress else 0
        result = RunResult(
            accepted=self._feeder.accepted + grpc_accepted,
            invalid=(self._invalid_records.count if self._invalid_records else 0)
            + self._feeder.refused
            + grpc_rejected,
            published=self._publisher.acknowledged,
            delivery_failures=self._publisher.failed,
            dropped=self._queue.dropped,
            left=left,
            failed=self._feeder.failed or self._publisher.error is not None or self._ingress_failed(),
            grpc_accepted=grpc_accepted,
            grpc_rejected=grpc_rejected,
        )
        log.info("ingester stopped", extra=dataclasses.asdict(result))
        return result

    def _close_inputs(self) -> None:
        """No more ticks in: the source stops, gRPC streams get their grace period, the queue closes.

        Runs on the source thread when the source ends and again at shutdown (then it does nothing new).
        """
        self._feeder.stop.set()
        if self._ingress is not None:
            self._ingress.stop()
        self._queue.close()

    def _shut_down(self, timeout_s: float) -> int:
        """Close the inputs, then drain and flush within `timeout_s`; return how many ticks were left over."""
        self._close_inputs()
        deadline = time.monotonic() + timeout_s
        publisher = self._threads["publisher"]
        publisher.join(max(0.0, deadline - time.monotonic()))
        if publisher.is_alive():
            self._publisher.abandon()
            publisher.join()
        self._reports_done.set()
        self._threads["reports"].join()
        # The source thread may sit in a blocking read (stdin): it is a daemon and is not waited for.
        self._threads["source"].join(0.1)
        unflushed = self._producer.flush(max(0.0, deadline - time.monotonic()))
        queued = self._queue.depth + self._publisher.unsent
        if queued or unflushed:
            log.warning(
                "shutdown timed out with ticks undelivered",
                extra={"in_queue": queued, "in_producer": unflushed, "timeout_s": timeout_s},
            )
        return queued + unflushed


def build_source(
    settings: IngesterSettings, replay_stream: BinaryIO | None, on_invalid: InvalidRecordHandler
) -> TickSource:
    if settings.source == "replay":
        if replay_stream is None:
            raise ConfigurationError("a replay needs its input stream")
        return ReplaySource(replay_stream, LineParser(settings.venue), settings.replay_speed, on_invalid)
    if settings.source == "none":
        return IdleSource()
    market = Market(settings.instruments, settings.venue, settings.trade_ratio, settings.seed)
    return SimulatorSource(market, settings.rate, settings.max_ticks)


def publish_reference(settings: IngesterSettings, instruments: list[Instrument]) -> None:
    """The simulator's reference data to the instrument master, before its first tick: what a
    venue's reference file is to a real feed. Compaction keeps one record per symbol, so
    publishing the same entries at every start costs nothing."""
    topic = settings.topics.instruments
    published = reference_master.publish(settings.kafka, topic, instruments, settings.startup_timeout_s)
    log.info("instruments published", extra={"instruments": published, "topic": topic})


def open_replay(settings: IngesterSettings) -> BinaryIO | None:
    """The replay input (stdin for "-"), or None for other sources; raises OSError with the reason."""
    if settings.source != "replay" or settings.replay_path is None:
        return None
    if settings.replay_path == "-":
        return sys.stdin.buffer
    return open(settings.replay_path, "rb")  # closed by serve()


def build_ingress(
    settings: IngesterSettings, queue: BoundedQueue[Record], metrics: IngesterMetrics
) -> GrpcIngress | None:
    """The gRPC Ingest service (not started yet), or None when it is turned off."""
    if not settings.grpc_enabled:
        return None
    verifier = TokenVerifier.optional(settings.auth)
    if verifier is None:
        log.warning(
            "auth is off: anyone who reaches the gRPC port can push ticks "
            "(set AUTH_HS256_SECRET or AUTH_RS256_PUBLIC_KEY[_FILE])",
            extra={"grpc_port": settings.grpc_port},
        )
    return GrpcIngress(settings, queue, metrics, verifier)


def serve(settings: IngesterSettings, stop: threading.Event, registry: CollectorRegistry = REGISTRY) -> int:
    """The whole ingester: check the input, create the topic, run until done; return the exit code."""
    try:
        replay_stream = open_replay(settings)
    except OSError as exc:
        log.error(f"cannot read the replay input INGESTER_REPLAY_PATH={settings.replay_path}: {exc.strerror}")
        return EXIT_CONFIG
    try:
        return _serve(settings, stop, registry, replay_stream)
    finally:
        if replay_stream is not None and replay_stream is not sys.stdin.buffer:
            replay_stream.close()


def _serve(
    settings: IngesterSettings,
    stop: threading.Event,
    registry: CollectorRegistry,
    replay_stream: BinaryIO | None,
) -> int:
    source_reasons = (*REASONS, *records.REASONS) if settings.source == "replay" else records.REASONS
    metrics = IngesterMetrics(settings.source, registry, source_reasons)
    invalid = InvalidRecords(metrics)
    source = build_source(settings, replay_stream, invalid)
    universe = None
    if isinstance(source, SimulatorSource):
        try:
            universe = source.market.instruments()
        except InvalidInstrument as exc:  # only a generated name's venue can break a rule
            log.error(
                f"INGESTER_VENUE={settings.venue!r} cannot name the simulator's generated instruments: {exc}"
            )
            return EXIT_CONFIG
    try:
        topics = settings.topics
        # The master is written here too: the simulator's universe, and gRPC PutInstruments.
        ensure_topics(
            settings.kafka,
            {topics.raw: topics.partitions, topics.instruments: INSTRUMENTS_PARTITIONS},
            topics.replication_factor,
            timeout_s=settings.startup_timeout_s,
            configs={topics.instruments: CHANGELOG_TOPIC_CONFIG},
        )
    except KafkaFailure as exc:
        log.error(
            f"cannot prepare topics {settings.topics.raw} and {settings.topics.instruments}: {exc} "
            "(check KAFKA_BOOTSTRAP_SERVERS and that the broker is up)"
        )
        return EXIT_FAILURE
    if universe is not None:
        try:
            publish_reference(settings, universe)
        except KafkaFailure as exc:
            log.error(f"cannot publish the simulator's instruments to {settings.topics.instruments}: {exc}")
            return EXIT_FAILURE
    # librdkafka's own log lines (broker down, retries, fatal errors) go through our JSON logging.
    producer = Producer(producer_config(settings.kafka, CLIENT_ID, logger=logging.getLogger("librdkafka")))
    queue = new_queue(settings)
    ingress = build_ingress(settings, queue, metrics)
    tracer = tracing.start("ingester", settings.tracing)
    pipeline = Pipeline(settings, source, producer, metrics, invalid, queue, ingress, tracer)
    with ExitStack() as cleanup:
        cleanup.callback(tracer.close)
        if ingress is not None:
            cleanup.callback(ingress.stop)
            try:
                ingress.start()
            except ConfigurationError as exc:
                log.error(
                    f"{exc} (set INGESTER_GRPC_HOST / INGESTER_GRPC_PORT, or INGESTER_GRPC_ENABLED=false)"
                )
                return EXIT_CONFIG
        if settings.metrics_port:
            try:
                ops = OpsServer(
                    settings.metrics_host, settings.metrics_port, pipeline.healthy, registry
                ).start()
            except OSError as exc:
                log.error(
                    f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                    f"{exc.strerror} (set INGESTER_METRICS_PORT, 0 turns it off)"
                )
                return EXIT_CONFIG
            cleanup.callback(ops.close)
        return pipeline.run(stop).exit_code
