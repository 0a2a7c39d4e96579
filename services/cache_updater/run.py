"""cache_updater's loops: processed states and alert events in, Redis plus pub/sub out.

Two consumers, two groups. States (`tt_processed_data`, applied by apply.py) are the live path:
they are read **uncommitted**, as soon as the processor produces them, without waiting for its
transaction to commit. That is safe because the processor is deterministic and every write is
version-guarded: a state of an aborted transaction is computed again, by whichever processor
redoes it, with the same version and the same content (stage stamps aside), and Redis keeps the
first. Alert events (`tt_alert_events`, applied by alerts.py) are read **committed**: which
command an alert meets first may differ on a redo, so an aborted event might never be redone.
One pipeline per batch carries the script calls (up to 64 states per call, each state applied
exactly as alone; one call per alert event), in order; offsets are stored after
the pipeline returned and committed by librdkafka in the background (`auto.commit.interval.ms`),
so a crash replays records that the version check, or the alerts' forward-only status, ignores.

Rebuild: for every processed partition it owns, cache_updater keeps a marker key in Redis.
A missing marker on a partition this consumer group has committed offsets for means Redis
lost states that were applied before (it restarted empty, or is a new server); cache_updater
then re-applies the latest state of each of that partition's instruments from the processor's
changelog (same partition number) and sets the marker. The version check makes this safe
alongside live updates, and each re-applied state is published, so connected clients catch up.
The changelog can be ahead of this consumer, so versions may jump forward after a rebuild;
they never go back. A partition the group has never committed needs no rebuild: consuming it
from the start fills Redis version by version. Markers and rebuilds concern the processed
topic only: the alert events' partitions are numbered alike but are another topic.

Alerts are rebuilt with the states: the processor keeps the active alerts of processed
partition p's instruments in its alert changelog (`tt_processor_alerts`, same partition
number), so the rebuild of p also re-applies an ACTIVE event for every alert in those books
(alerts.restored_events), through the alerts' forward-only script: an alert that a live event
has triggered or cancelled in the meantime stays so, and every restored alert is in its user's
hash again (alert.list, alert.cancel and the quota see it) and published. Only active alerts
come back: the users' triggered, cancelled and rejected alerts are in no changelog and are lost
with Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from google.protobuf.message import DecodeError
from opentelemetry.trace import Span

from tapewire import tracing
from tapewire.consume_loop import run_batches
from tapewire.errors import KafkaFailure, StoreUnavailable
from tapewire.keys import RedisKeys
from tapewire.redis_client import SyncClient
from tapewire.tracing import Tracer
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb

from .alerts import (
    DEFAULT_RETENTION,
    AlertChange,
    AlertRetention,
    apply_alert_event,
    invalid_reason,
    prepare_alert,
    restored_events,
)
from .apply import Change, StateScript, cache_stamp, prepare
from .markers import markers_for
from .metrics import CacheUpdaterMetrics
from .scripts import RETRY_LATER, AnyPipeline, Script, run_pipeline
from .settings import CacheUpdaterSettings

log = logging.getLogger(__name__)

# partitions -> {partition: {instrument key: latest changelog value}}
Restore = Callable[[list[int]], dict[int, dict[bytes, bytes]]]


@dataclass(frozen=True)
class Consumers:
    """The states' consumer (read_uncommitted: the live path) and the alert events' (read_committed)."""

    states: Consumer
    alerts: Consumer


class CacheUpdater:
    def __init__(
        self,
        client: SyncClient,
        keys: RedisKeys,
        metrics: CacheUpdaterMetrics,
        history_length: int = 0,
        clock: Callable[[], int] = time.time_ns,
        alert_events_topic: str = "",
        alert_retention: AlertRetention = DEFAULT_RETENTION,
        tracer: Tracer = tracing.DISABLED,
    ) -> None:
        self._client = client
        self._tracer = tracer
        self._keys = keys
        self._history_length = history_length
        self._metrics = metrics
        self._clock = clock
        self._alert_events_topic = alert_events_topic
        self._alert_retention = alert_retention
        self._states_script = StateScript(keys)
        self._alert_script = Script(apply_alert_event(keys.publish))
        self._scripts = (self._states_script.script, self._alert_script)
        self._markers = markers_for(client, keys)
        self._last_marker_check = 0.0
        self._applied: set[int] = set()  # processed partitions this process has written states of

    def handle(self, batch: list[Message]) -> None:
        cached_ns = self._clock()
        stamp = cache_stamp(cached_ns)
        changes: list[Change] = []
        alert_changes: list[AlertChange] = []
        partitions: set[int] = set()
        spans: list[Span] | None = [] if self._tracer.enabled else None
        for message in batch:
            if message.topic() == self._alert_events_topic:
                if (alert_change := self._decode_alert(message, cached_ns)) is not None:
                    alert_changes.append(alert_change)
            elif (change := self._decode(message, cached_ns, stamp, spans)) is not None:
                changes.append(change)
                partitions.add(message.partition() or 0)
        if not spans:
            self._apply(changes, alert_changes)
        else:
            self._apply_traced(changes, alert_changes, spans)
        self._applied |= partitions

    def _apply_traced(
        self, changes: list[Change], alert_changes: list[AlertChange], spans: list[Span]
    ) -> None:
        """`_apply`, ending the spans of the batch's sampled states when Redis has answered."""
        try:
            self._apply(changes, alert_changes)
        except Exception as exc:  # the batch is retried, and its states traced again
            tracing.all_failed(spans, f"{type(exc).__name__}: {exc}", self._clock())
            raise
        tracing.all_ended(spans, self._clock())

    def rebuild_if_missing(
        self,
        partitions: list[int],
        committed: Callable[[list[int]], list[int]],
        restore: Restore,
        interval_s: float,
        restore_alerts: Restore | None = None,
    ) -> None:
        """Re-apply the changelogs of every owned partition whose marker is gone (see module doc).

        `committed` picks the partitions this group has committed offsets for; `restore` reads
        the states' changelog, `restore_alerts` the alert books' (None: states only).
        """
        now = time.monotonic()
        if not partitions or now - self._last_marker_check < interval_s:
            return
        self._last_marker_check = now
        try:
            missing = self._markers.missing(partitions)
        except RETRY_LATER as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        if not missing:
            return
        # Applied by this process, or by the group before it: offsets are committed in the
        # background, so the group's commits alone may not know of the last second's work yet.
        lost = sorted(set(committed(missing)) | (self._applied & set(missing)))
        if lost:
            self._rebuild(lost, restore, restore_alerts)
        self._set_markers(missing)

    def _rebuild(self, partitions: list[int], restore: Restore, restore_alerts: Restore | None) -> None:
        started = time.monotonic()
        cached_ns = self._clock()
        stamp = cache_stamp(cached_ns)
        changes = [
            prepare(pb.InstrumentState.FromString(value), value, self._keys, stamp, self._history_length)
            for values in restore(partitions).values()
            for value in values.values()
        ]
        alert_changes = self._restored_alerts(partitions, restore_alerts, cached_ns)
        applied, alerts_applied = self._apply(changes, alert_changes)
        self._metrics.rebuilds.inc()
        log.warning(
            "cache rebuilt from the changelog",
            extra={
                "partitions": partitions,
                "states": len(changes),
                "applied": applied,
                "alerts": len(alert_changes),
                "alerts_applied": alerts_applied,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _restored_alerts(
        self, partitions: list[int], restore_alerts: Restore | None, cached_ns: int
    ) -> list[AlertChange]:
        if restore_alerts is None:
            return []
        return [
            prepare_alert(event, self._keys, cached_ns, self._alert_retention)
            for records in restore_alerts(partitions).values()
            for event in restored_events(records, cached_ns)
        ]

    def _apply(self, changes: list[Change], alert_changes: Sequence[AlertChange] = ()) -> tuple[int, int]:
        """Run every script call in one pipeline; return how many states and alert events were written."""
        if not changes and not alert_changes:
            return 0, 0

        def fill(pipe: AnyPipeline) -> int:
            calls = self._states_script.queue(changes, pipe)
            for alert_change in alert_changes:
                self._alert_script.queue(pipe, alert_change.keys, alert_change.args)
            return calls

        try:
            calls, results = run_pipeline(self._client, self._scripts, fill)
        except RETRY_LATER as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc
        fresh = sum(StateScript.applied(results[:calls]))
        self._metrics.states.labels("applied").inc(fresh)
        self._metrics.states.labels("stale").inc(len(changes) - fresh)
        written = sum(1 for result in results[calls:] if result == 1)
        if alert_changes:
            self._metrics.alert_events.labels("applied").inc(written)
            self._metrics.alert_events.labels("stale").inc(len(alert_changes) - written)
        return fresh, written

    def _set_markers(self, partitions: list[int]) -> None:
        try:
            self._markers.mark(partitions)
        except RETRY_LATER as exc:
            raise StoreUnavailable(f"Redis: {exc}") from exc

    def _decode(
        self, message: Message, cached_ns: int, stamp: bytes, spans: list[Span] | None = None
    ) -> Change | None:
        value = message.value()
        if message.error() is not None or value is None:
            return None
        try:
            state = pb.InstrumentState.FromString(value)
        except DecodeError:
            # Only the processor writes this topic; a record it cannot have written is logged and skipped.
            self._metrics.states.labels("undecodable").inc()
            log.error(
                "undecodable processed state",
                extra={"partition": message.partition(), "offset": message.offset()},
            )
            return None
        if state.times.processed_ns:
            self._metrics.processed_to_cached.observe(max(0, cached_ns - state.times.processed_ns) / 1e9)
        traceparent = None if spans is None else self._traced(message, state, cached_ns, spans)
        return prepare(state, value, self._keys, stamp, self._history_length, traceparent)

    def _traced(
        self, message: Message, state: pb.InstrumentState, batch_ns: int, spans: list[Span]
    ) -> str | None:
        """For a sampled state (its record carries a trace context): a span from the start of
        its batch to Redis's reply, and the context its update carries on to dashboard_api."""
        parent = tracing.from_headers(message.headers())
        if parent is None:
            return None
        attributes = {"instrument": state.instrument, "version": state.version}
        span = self._tracer.start("cache_updater apply", batch_ns, parent, attributes)
        spans.append(span)
        return tracing.traceparent(span)

    def _decode_alert(self, message: Message, cached_ns: int) -> AlertChange | None:
        value = message.value()
        if message.error() is not None or value is None:
            return None
        try:
            event = apb.AlertEvent.FromString(value)
        except DecodeError:
            self._skip_alert(message, "undecodable", "not a tapewire.v1.AlertEvent")
            return None
        if (reason := invalid_reason(event)) is not None:
            self._skip_alert(message, "invalid", reason)
            return None
        return prepare_alert(event, self._keys, cached_ns, self._alert_retention)

    def _skip_alert(self, message: Message, outcome: str, reason: str) -> None:
        # Only the processor writes this topic; a record it cannot have written is logged and skipped.
        self._metrics.alert_events.labels(outcome).inc()
        log.error(
            "alert event skipped",
            extra={"reason": reason, "partition": message.partition(), "offset": message.offset()},
        )


def run(
    settings: CacheUpdaterSettings,
    consumers: Consumers,
    client: SyncClient,
    restore: Restore,
    metrics: CacheUpdaterMetrics,
    stop: threading.Event,
    restore_alerts: Restore | None = None,
    tracer: Tracer = tracing.DISABLED,
) -> None:
    """Consume until `stop` is set, then leave both groups cleanly. `restore` reads the states'
    changelog and `restore_alerts` the alert books' for a rebuild (None: states only).

    Two loops, each with its own consumer: states on this thread, alert events on another.
    Either one failing stops both."""
    updater = CacheUpdater(
        client,
        RedisKeys.from_settings(settings.redis),
        metrics,
        settings.redis.history_length,
        alert_events_topic=settings.topics.alert_events,
        alert_retention=settings.alert_retention,
        tracer=tracer,
    )
    states, alert_events = consumers.states, consumers.alerts
    states.subscribe([settings.topics.processed])
    alert_events.subscribe([settings.topics.alert_events])

    def committed(partitions: list[int]) -> list[int]:
        asked = [TopicPartition(settings.topics.processed, p) for p in partitions]
        try:
            return [tp.partition for tp in states.committed(asked, timeout=10) if tp.offset >= 0]
        except KafkaException as exc:
            raise KafkaFailure(f"could not read committed offsets: {exc}", retriable=True) from exc

    def housekeeping() -> None:
        owned = sorted(tp.partition for tp in states.assignment())
        updater.rebuild_if_missing(owned, committed, restore, settings.cache_check_interval_s, restore_alerts)

    def alerts_loop() -> None:
        try:
            run_batches(alert_events, updater.handle, stop, settings.alerts_loop, metrics.alerts_loop)
        finally:
            stop.set()

    alerts_thread = threading.Thread(target=alerts_loop, name="alert-events", daemon=True)
    alerts_thread.start()
    try:
        run_batches(states, updater.handle, stop, settings.loop, metrics.loop, housekeeping)
    finally:
        stop.set()
        alerts_thread.join(30)
        states.close()
        alert_events.close()
        client.close()
