"""Preparing alert events for the cache script: keys, arguments and the one stamp."""

from __future__ import annotations

from services.cache_updater.alerts import AlertRetention, invalid_reason, prepare_alert
from tapewire.keys import RedisKeys
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb

KEYS = RedisKeys(prefix="tt:", channel="tt_updates", alerts_channel="tt_alerts")
ALERT = apb.Alert(
    alert_id="a1", user_id="ann", instrument="AAPL", direction=apb.ALERT_DIRECTION_ABOVE, price="1"
)


def test_keys_and_arguments() -> None:
    event = apb.AlertEvent(alert=ALERT, status=apb.ALERT_STATUS_ACTIVE, event_ns=5)
    change = prepare_alert(event, KEYS, cached_ns=9, retention=AlertRetention(ttl_s=60, kept=3))
    assert change.keys == ("tt:alerts:ann", "tt:alerts_terminal:ann")
    alert_id, status, payload, channel, ttl, kept, score = change.args
    assert (alert_id, status, channel, ttl, kept, score) == (
        "a1",
        apb.ALERT_STATUS_ACTIVE,
        "tt_alerts:ann",
        60,
        3,
        5,
    )
    # Nothing stamped on an event without stage times.
    assert apb.AlertEvent.FromString(payload) == event


def test_stamps_the_cache_time_on_stage_times_only() -> None:
    event = apb.AlertEvent(
        alert=ALERT, status=apb.ALERT_STATUS_TRIGGERED, times=pb.StageTimes(processed_ns=3), event_ns=3
    )
    payload = prepare_alert(event, KEYS, cached_ns=9, retention=AlertRetention()).args[2]
    assert apb.AlertEvent.FromString(payload).times == pb.StageTimes(processed_ns=3, cached_ns=9)


def test_an_event_without_time_sorts_by_the_cache_time() -> None:
    event = apb.AlertEvent(alert=ALERT, status=apb.ALERT_STATUS_CANCELLED)
    assert prepare_alert(event, KEYS, cached_ns=9, retention=AlertRetention()).args[6] == 9


def test_invalid_events() -> None:
    assert invalid_reason(apb.AlertEvent(alert=ALERT, status=apb.ALERT_STATUS_REJECTED)) is None
    assert (
        invalid_reason(apb.AlertEvent(alert=apb.Alert(alert_id="a1"), status=1)) == "no user id or alert id"
    )
    assert (
        invalid_reason(apb.AlertEvent(alert=apb.Alert(user_id="ann"), status=1)) == "no user id or alert id"
    )
    assert invalid_reason(apb.AlertEvent(alert=ALERT)) == "unknown status 0"
    assert invalid_reason(apb.AlertEvent(alert=ALERT, status=9)) == "unknown status 9"  # type: ignore[arg-type]
