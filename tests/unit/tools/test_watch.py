"""tools.watch: arguments, latency math, formatting, version checks, and one session against a
small in-process WebSocket server that plays dashboard_api's part."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import market_pb2 as pb
from tapewire.v1 import stream_pb2 as spb
from tools.watch import (
    SUBSCRIBE_CHUNK,
    AlertSpec,
    Latency,
    Options,
    RollingStats,
    Session,
    VersionTracker,
    Watcher,
    WatchError,
    after_close,
    alert_create_message,
    clock_text,
    connect_url,
    decode_frame,
    describe_close,
    encode_client,
    enum_word,
    format_latency,
    format_snapshot,
    format_update,
    http_base,
    latency,
    main,
    parse_alert_spec,
    parse_options,
    percentile,
    subscribe_messages,
)

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
MS = 1_000_000
TIMES = {"exchange_ns": T0, "ingest_ns": T0 + MS, "processed_ns": T0 + 2 * MS, "cached_ns": T0 + 4 * MS}


def times(**overrides: int) -> dict[str, int]:
    return {**TIMES, "sent_ns": T0 + 5 * MS} | overrides


def update(instrument: str, version: int, **state: Any) -> dict[str, Any]:
    body = {"instrument": instrument, "version": version, "times": times(), **state}
    return {"type": "update", "instrument": instrument, "version": version, "state": body}


def binary(frame: str | bytes) -> bytes:
    assert isinstance(frame, bytes)
    return frame


# ---- arguments -----------------------------------------------------------------------------


def test_alert_specs() -> None:
    assert parse_alert_spec("AAPL:above:190.5") == AlertSpec("AAPL", "above", "190.5")
    assert parse_alert_spec("ES:Z5:below:6000") == AlertSpec("ES:Z5", "below", "6000")


@pytest.mark.parametrize(
    "text", ["AAPL", "AAPL:above", "AAPL:up:1", "AAPL:above:-1", "AAPL:above:1e3", ":above:1", "a b:above:1"]
)
def test_bad_alert_specs(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_alert_spec(text)


def test_defaults_and_the_token_from_the_environment() -> None:
    options = parse_options([], {"TAPEWIRE_TOKEN": "jwt"})
    assert options == Options(
        url="ws://127.0.0.1:8000/ws",
        instruments=(),
        token="jwt",
        encoding="json",
        max_rate=0.0,
        resume=False,
        count=None,
        stats=False,
        alerts=(),
    )


def test_every_option() -> None:
    argv = [
        "AAPL",
        "MSFT",
        "AAPL",
        "--url",
        "wss://h/ws?user=ann",
        "--token",
        "t",
        "--encoding",
        "protobuf",
        "--max-rate",
        "4",
        "--resume",
        "--count",
        "10",
        "--stats",
        "--alert",
        "AAPL:above:1",
        "--alert",
        "MSFT:below:2",
        "--deflate",
    ]
    options = parse_options(argv, {"TAPEWIRE_TOKEN": "ignored"})
    assert options == Options(
        url="wss://h/ws?user=ann",
        instruments=("AAPL", "MSFT"),
        token="t",
        encoding="protobuf",
        max_rate=4.0,
        resume=True,
        count=10,
        stats=True,
        alerts=(AlertSpec("AAPL", "above", "1"), AlertSpec("MSFT", "below", "2")),
        deflate=True,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "0"],
        ["--count", "x"],
        ["--max-rate", "1001"],
        ["--max-rate", "-1"],
        ["--max-rate", "fast"],
        ["--encoding", "xml"],
        ["bad name"],
        ["--alert", "AAPL"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, {})
    assert exited.value.code == 2
    capsys.readouterr()


def test_a_url_that_is_not_a_websocket() -> None:
    with pytest.raises(WatchError, match="ws://"):
        parse_options(["--url", "http://h:8000/ws"], {})
    err = io.StringIO()
    assert main(["--url", "http://h/ws"], {}, io.StringIO(), err) == 2
    assert "ws://" in err.getvalue()


def test_addresses() -> None:
    assert http_base("ws://127.0.0.1:8000/ws") == "http://127.0.0.1:8000"
    assert http_base("wss://dash.example/ws?user=ann") == "https://dash.example"
    assert connect_url("ws://h:1/ws", "json") == "ws://h:1/ws"
    assert (
        connect_url("ws://h:1/ws?user=ann&encoding=json", "protobuf")
        == "ws://h:1/ws?user=ann&encoding=protobuf"
    )
    assert connect_url("ws://h:1", "json") == "ws://h:1/ws"


# ---- client messages -----------------------------------------------------------------------


def test_subscribe_messages_carry_since_and_max_rate_per_chunk() -> None:
    names = [f"I{n}" for n in range(SUBSCRIBE_CHUNK + 2)]
    first, second = subscribe_messages(names, {"I0": 7, names[-1]: 0, "OTHER": 3}, 4.0, first_id=5)
    assert first == {
        "type": "subscribe",
        "id": "s5",
        "instruments": names[:SUBSCRIBE_CHUNK],
        "since": {"I0": 7},
        "max_rate": 4.0,
    }
    assert second["id"] == "s6"
    assert second["instruments"] == names[SUBSCRIBE_CHUNK:]
    assert second["since"] == {names[-1]: 0}
    (plain,) = subscribe_messages(["AAPL"], {}, 0.0, first_id=1)
    assert plain == {"type": "subscribe", "id": "s1", "instruments": ["AAPL"]}


def test_client_messages_in_json() -> None:
    message = alert_create_message("a1", AlertSpec("AAPL", "below", "190.5"))
    assert json.loads(encode_client(message, "json")) == {
        "type": "alert.create",
        "id": "a1",
        "instrument": "AAPL",
        "direction": "below",
        "price": "190.5",
    }


def test_client_messages_in_protobuf() -> None:
    (subscribe,) = subscribe_messages(["AAPL", "MSFT"], {"AAPL": 9}, 2.0, first_id=1)
    wire = spb.ClientMessage.FromString(binary(encode_client(subscribe, "protobuf")))
    assert wire == spb.ClientMessage(
        request_id="s1",
        subscribe=spb.SubscribeRequest(instruments=["AAPL", "MSFT"], since={"AAPL": 9}, max_rate=2.0),
    )
    create = alert_create_message("a2", AlertSpec("AAPL", "above", "1.5"))
    assert spb.ClientMessage.FromString(binary(encode_client(create, "protobuf"))) == spb.ClientMessage(
        request_id="a2",
        create_alert=spb.CreateAlertRequest(
            instrument="AAPL", direction=apb.ALERT_DIRECTION_ABOVE, price="1.5"
        ),
    )
    ping = spb.ClientMessage.FromString(binary(encode_client({"type": "ping", "id": "p1"}, "protobuf")))
    assert ping.WhichOneof("kind") == "ping"
    assert ping.request_id == "p1"
    listing = spb.ClientMessage.FromString(binary(encode_client({"type": "alert.list"}, "protobuf")))
    assert listing.WhichOneof("kind") == "list_alerts"
    with pytest.raises(ValueError):
        encode_client({"type": "nonsense"}, "protobuf")


# ---- server messages -----------------------------------------------------------------------


def test_json_frames() -> None:
    assert decode_frame('{"type":"heartbeat","server_time_ns":5}') == {
        "type": "heartbeat",
        "server_time_ns": 5,
    }
    with pytest.raises(ValueError):
        decode_frame("[1]")
    with pytest.raises(ValueError):
        decode_frame("{nope")


def test_protobuf_update_has_the_json_shape() -> None:
    state = pb.InstrumentState(instrument="AAPL", version=12, last_price="187.42", bid_price="187.41")
    state.times.ingest_ns = T0
    state.times.sent_ns = T0 + MS
    message = decode_frame(spb.ServerMessage(update=pb.Update(state=state)).SerializeToString())
    assert message["type"] == "update"
    assert (message["instrument"], message["version"]) == ("AAPL", 12)
    assert message["state"]["last_price"] == "187.42"
    assert message["state"]["times"]["ingest_ns"] == T0
    assert message["state"]["times"]["sent_ns"] == T0 + MS
    assert message["state"]["bar_1s"] is None  # an unset sub-message


def test_protobuf_snapshot_has_the_json_shape() -> None:
    snapshot = spb.Snapshot(
        states=[pb.InstrumentState(instrument="MSFT", version=412)],
        missing=["NEW"],
        resumed={"AAPL": spb.VersionRange(from_version=1208, to_version=1213)},
        gaps=["MSFT"],
        request_id="s2",
        reason=spb.SNAPSHOT_REASON_SUBSCRIBE,
    )
    message = decode_frame(spb.ServerMessage(snapshot=snapshot).SerializeToString())
    assert message["type"] == "snapshot"
    assert message["id"] == "s2"
    assert message["reason"] == "subscribe"
    assert [s["version"] for s in message["states"]] == [412]
    assert message["missing"] == ["NEW"]
    assert message["resumed"] == {"AAPL": {"from": 1208, "to": 1213}}
    assert message["gaps"] == ["MSFT"]


def test_protobuf_replies_and_alerts_have_the_json_shape() -> None:
    def decoded(**kind: Any) -> dict[str, Any]:
        return decode_frame(spb.ServerMessage(**kind).SerializeToString())

    assert decoded(error=spb.ServerError(code="busy", reason="full", request_id="a1")) == {
        "type": "error",
        "code": "busy",
        "reason": "full",
        "id": "a1",
    }
    assert decoded(alert_accepted=spb.AlertAccepted(request_id="a1", alert_id="x")) == {
        "type": "alert.accepted",
        "id": "a1",
        "alert_id": "x",
    }
    assert decoded(pong=spb.Pong(request_id="p1", server_time_ns=T0)) == {
        "type": "pong",
        "id": "p1",
        "server_time_ns": T0,
    }
    welcome = decoded(welcome=spb.Welcome(protocol=1, user_id="ann", idle_timeout_s=120.0))
    assert (welcome["type"], welcome["protocol"], welcome["user_id"], welcome["limits"]) == (
        "welcome",
        1,
        "ann",
        None,
    )
    event = apb.AlertEvent(
        alert=apb.Alert(alert_id="x", instrument="AAPL", direction=apb.ALERT_DIRECTION_ABOVE, price="190.5"),
        status=apb.ALERT_STATUS_TRIGGERED,
        trigger_price="190.52",
        trigger_version=1311,
    )
    alert = decoded(alert=event)
    assert alert["type"] == "alert"
    assert (alert["status"], alert["alert"]["direction"], alert["trigger_version"]) == (
        "triggered",
        "above",
        1311,
    )
    listing = decoded(alert_list=spb.AlertList(request_id="a3", alerts=[event]))
    assert (listing["type"], listing["id"], listing["alerts"][0]["status"]) == (
        "alert.list",
        "a3",
        "triggered",
    )
    assert decoded()["type"] == "?"
    with pytest.raises(ValueError):
        decode_frame(b"\xff\xff\xff")


def test_enum_words() -> None:
    assert enum_word("AlertStatus", "ALERT_STATUS_TRIGGERED") == "triggered"
    assert enum_word("SnapshotReason", "SNAPSHOT_REASON_RESYNC") == "resync"
    assert enum_word("TickKind", "TICK_KIND_TRADE") == "trade"


# ---- latency and lines ---------------------------------------------------------------------


def test_latency_end_to_end_and_per_hop() -> None:
    lat = latency(times(), received_ns=T0 + 8 * MS)
    assert lat == Latency(7.0, (1.0, 2.0, 1.0, 3.0))
    assert format_latency(lat) == "e2e 7.00ms [proc 1.00 cache 2.00 send 1.00 recv 3.00]"


def test_latency_with_missing_stamps() -> None:
    lat = latency(times(processed_ns=0), received_ns=T0 + 8 * MS)
    assert lat == Latency(7.0, (None, None, 1.0, 3.0))
    assert format_latency(lat) == "e2e 7.00ms [proc ? cache ? send 1.00 recv 3.00]"
    assert latency(None, T0) == Latency(None, (None, None, None, None))
    assert latency({"ingest_ns": str(T0)}, T0 + MS).end_to_end_ms == 1.0  # int64 as a JSON string


def test_a_skewed_clock_shows_as_a_negative_hop() -> None:
    assert latency(times(), received_ns=T0 + 4 * MS).hops_ms[-1] == -1.0


def test_update_line() -> None:
    message = update("AAPL", 1214, last_price="187.42", bid_price="187.41", ask_price="187.43")
    line = format_update(message, latency(message["state"]["times"], T0 + 8 * MS), T0 + 8 * MS)
    assert line == (
        "00:00:00.008 AAPL v1214 187.42 187.41/187.43  e2e 7.00ms [proc 1.00 cache 2.00 send 1.00 recv 3.00]"
    )
    bare = update("X", 1, last_price=None)
    assert " X v1 - -/-  " in format_update(bare, latency(None, T0), T0)


def test_clock_text() -> None:
    assert clock_text(T0 + 3_723_004_999_999) == "01:02:03.004"


def test_snapshot_line() -> None:
    message = {
        "type": "snapshot",
        "id": "s1",
        "reason": "subscribe",
        "states": [{"instrument": f"I{n}", "version": n} for n in range(10)],
        "missing": ["NEW"],
        "resumed": {"AAPL": {"from": 5, "to": 7}},
        "gaps": ["MSFT"],
    }
    assert format_snapshot(message, T0) == (
        "00:00:00.000 snapshot s1 (subscribe): 10 states [I0 v0, I1 v1, I2 v2, I3 v3, I4 v4, I5 v5, I6 v6, "
        "I7 v7, … and 2 more], missing [NEW], resumed [AAPL v5..v7], gaps [MSFT]"
    )


# ---- version checks ------------------------------------------------------------------------


def snapshot(states: dict[str, int], **fields: Any) -> dict[str, Any]:
    listed = [{"instrument": name, "version": version} for name, version in states.items()]
    return {"type": "snapshot", "states": listed, "missing": [], "resumed": {}, "gaps": []} | fields


def test_in_order_versions_are_fine() -> None:
    tracker = VersionTracker()
    assert tracker.on_snapshot(snapshot({"AAPL": 10}, missing=["NEW"])) == []
    assert tracker.on_update("AAPL", 11) == (None, 0)
    assert tracker.on_update("NEW", 1) == (None, 0)
    assert tracker.since() == {"AAPL": 11, "NEW": 1}
    assert (tracker.gaps, tracker.repeats, tracker.skipped) == (0, 0, 0)


def test_an_unannounced_jump_is_a_gap() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    finding, skipped = tracker.on_update("AAPL", 14)
    assert finding is not None
    assert (finding.kind, finding.expected, finding.got, skipped) == ("gap", 11, 14, 0)
    assert finding.describe().startswith("! GAP AAPL: expected v11, got v14 (3 versions missing")
    assert tracker.gaps == 1
    assert tracker.on_update("AAPL", 15) == (None, 0)


def test_a_repeat_or_a_step_back() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    finding, _ = tracker.on_update("AAPL", 10)
    assert finding is not None
    assert finding.describe() == "! REPEAT AAPL: v10 after v10"
    finding, _ = tracker.on_update("AAPL", 3)
    assert finding is not None
    assert finding.kind == "repeat"
    assert tracker.since() == {"AAPL": 10}  # never goes back
    assert tracker.repeats == 2


def test_conflation_announces_one_jump_per_instrument() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10, "MSFT": 5}))
    tracker.on_conflated(["AAPL"])
    assert tracker.on_update("AAPL", 20) == (None, 9)
    finding, _ = tracker.on_update("AAPL", 22)  # the announcement covered one jump only
    assert finding is not None
    assert finding.kind == "gap"
    finding, _ = tracker.on_update("MSFT", 7)
    assert finding is not None
    assert tracker.skipped == 9


def test_a_throttle_makes_jumps_expected() -> None:
    tracker = VersionTracker(throttled=True)
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    assert tracker.on_update("AAPL", 15) == (None, 4)
    assert tracker.gaps == 0


def test_updates_before_any_snapshot_start_the_count() -> None:
    tracker = VersionTracker()
    assert tracker.on_update("AAPL", 50) == (None, 0)
    finding, _ = tracker.on_update("AAPL", 52)
    assert finding is not None


def test_resume_must_start_right_after_the_last_version_held() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10, "MSFT": 4}))
    notes = tracker.on_snapshot(
        snapshot({}, resumed={"AAPL": {"from": 11, "to": 13}, "MSFT": {"from": 7, "to": 9}})
    )
    assert notes == ["! GAP MSFT: resumed from v7, expected v5"]
    assert tracker.gaps == 1
    # Nothing to replay: from = to + 1.
    assert tracker.on_snapshot(snapshot({}, resumed={"AAPL": {"from": 11, "to": 10}})) == []


def test_gaps_the_server_announces() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    notes = tracker.on_snapshot(snapshot({"AAPL": 50}, gaps=["AAPL"]))
    assert notes == ["! AAPL: the server's history did not reach back, v11..v49 lost"]
    assert (tracker.lost_by_server, tracker.gaps) == (39, 0)


def test_a_resync_snapshot_may_jump() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    assert tracker.on_snapshot(snapshot({"AAPL": 30}, reason="resync")) == []
    assert tracker.skipped == 19
    assert tracker.on_update("AAPL", 31) == (None, 0)


def test_a_snapshot_that_jumps_without_saying_so() -> None:
    tracker = VersionTracker()
    tracker.on_snapshot(snapshot({"AAPL": 10}))
    assert tracker.on_snapshot(snapshot({"AAPL": 11})) == []
    assert tracker.on_snapshot(snapshot({"AAPL": 20})) == [
        "! GAP AAPL: snapshot at v20 after v11, not listed in its gaps"
    ]
    assert tracker.on_snapshot(snapshot({"AAPL": 5})) == ["! BACKWARDS AAPL: snapshot at v5 after v20"]
    assert (tracker.gaps, tracker.repeats) == (1, 1)


# ---- statistics ----------------------------------------------------------------------------


def test_percentiles() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_rolling_stats_keep_the_window_and_count_the_rate() -> None:
    stats = RollingStats(window_s=10)
    for n in range(20):
        stats.add(now_s=float(n), end_to_end_ms=float(n))
    stats.add(now_s=19.5, end_to_end_ms=None)  # counted, but has no latency
    stats.last_report_at = 17.0
    rate, p50, p99, samples = stats.report(now_s=19.0 + 1.0)
    assert rate == 21 / 3
    assert samples == 10  # the window is [10 s, 20 s]
    assert (p50, p99) == (14.0, 19.0)
    assert stats.report(now_s=21.0)[0] == 0.0


# ---- the watcher ---------------------------------------------------------------------------


def test_the_watcher_prints_updates_and_stops_at_the_count() -> None:
    watcher = Watcher(count=2)
    assert watcher.handle(snapshot({"AAPL": 10}, id="s1"), T0, 0.0) == [
        "00:00:00.000 snapshot s1 (subscribe): 1 states [AAPL v10]"
    ]
    (line,) = watcher.handle(update("AAPL", 11), T0 + 8 * MS, 0.1)
    assert line.startswith("00:00:00.008 AAPL v11 ")
    assert not watcher.finished
    lines = watcher.handle(update("AAPL", 13), T0 + 9 * MS, 0.2)
    assert lines[1].startswith("! GAP AAPL")
    assert watcher.finished
    assert watcher.summary() == (
        "2 updates, 1 gaps, 0 repeats, 0 skipped as announced, 0 lost by the server's history"
    )


def test_the_watcher_marks_announced_skips_on_the_line() -> None:
    watcher = Watcher()
    watcher.handle(snapshot({"AAPL": 10}), T0, 0.0)
    (conflated,) = watcher.handle({"type": "conflated", "dropped": 5, "instruments": ["AAPL"]}, T0, 0.0)
    assert conflated == "00:00:00.000 conflated: 5 updates dropped for [AAPL]"
    (line,) = watcher.handle(update("AAPL", 16), T0, 0.0)
    assert line.endswith("  (skipped 5)")


def test_stats_mode_prints_no_update_or_heartbeat_lines_but_keeps_errors_and_alerts() -> None:
    watcher = Watcher(stats_only=True)
    assert watcher.handle(update("AAPL", 1), T0 + 8 * MS, 0.0) == []
    assert watcher.handle({"type": "heartbeat", "server_time_ns": T0}, T0, 0.0) == []
    assert watcher.handle({"type": "error", "code": "busy", "reason": "full", "id": "a1"}, T0, 0.0) == [
        "00:00:00.000 error busy (a1): full"
    ]
    event = {
        "type": "alert",
        "status": "triggered",
        "alert": {"alert_id": "x", "instrument": "AAPL", "direction": "above", "price": "190.5"},
        "trigger_price": "190.52",
        "trigger_version": 1311,
        "times": times(),
        "reason": "",
    }
    assert watcher.handle(event, T0 + 8 * MS, 0.0) == [
        "00:00:00.008 alert triggered x AAPL above 190.5: trade 190.52 at v1311, "
        "e2e 7.00ms [proc 1.00 cache 2.00 send 1.00 recv 3.00]"
    ]
    line = watcher.stats_line(T0 + 1000 * MS, now_s=1.0)
    assert line.startswith("00:00:01.000 1 upd/s  e2e p50 7.00ms p99 7.00ms (last 10s, 1 samples)  total 1")


def test_other_messages() -> None:
    watcher = Watcher()
    welcome = {
        "type": "welcome",
        "protocol": 1,
        "connection_id": "c1",
        "user_id": "ann",
        "heartbeat_s": 15.0,
        "idle_timeout_s": 40.0,
        "encoding": "json",
    }
    assert watcher.handle(welcome, T0, 0.0) == [
        "00:00:00.000 welcome: connection c1 as ann, protocol 1, encoding json, heartbeat 15.0s, "
        "idle timeout 40.0s"
    ]
    assert watcher.ping_interval_s() == 20.0
    assert watcher.handle({"type": "heartbeat", "server_time_ns": T0 + 2 * MS}, T0, 0.0) == [
        "00:00:00.000 heartbeat (server clock +2.00ms from ours)"
    ]
    watcher.pings["p1"] = 1.0
    assert watcher.handle({"type": "pong", "id": "p1", "server_time_ns": T0}, T0, 1.0005) == [
        "00:00:00.000 pong p1 rtt 0.50ms (server clock +0.00ms from ours)"
    ]
    assert watcher.handle({"type": "alert.accepted", "id": "a1", "alert_id": "x"}, T0, 0.0) == [
        "00:00:00.000 alert accepted (a1): x"
    ]
    rejected = {"status": "rejected", "alert": {"alert_id": "y"}, "reason": "unknown instrument"}
    (listing,) = watcher.handle({"type": "alert.list", "id": "a3", "alerts": [rejected]}, T0, 0.0)
    assert listing == "00:00:00.000 alerts (a3): 1\n    alert rejected y None None None: unknown instrument"
    assert watcher.handle({"type": "mystery"}, T0, 0.0) == ['00:00:00.000 mystery: {"type": "mystery"}']


def test_without_a_welcome_pings_go_every_30_s() -> None:
    assert Watcher().ping_interval_s() == 30.0


# ---- reconnecting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "resume", "decision"),
    [
        (1000, True, "stop"),
        (1008, True, "stop"),
        (4001, True, "stop"),
        (4010, True, "stop"),
        (1001, True, "now"),
        (1012, True, "now"),
        (1011, True, "backoff"),
        (1013, True, "backoff"),
        (4008, True, "backoff"),
        (4009, True, "backoff"),
        (1006, True, "backoff"),
        (None, True, "backoff"),
        (1012, False, "stop"),
        (None, False, "stop"),
    ],
)
def test_after_close(code: int | None, resume: bool, decision: str) -> None:
    assert after_close(code, resume) == decision


def test_close_descriptions() -> None:
    assert describe_close(4008, "too slow") == "too slow (4008: too slow)"
    assert describe_close(1012, "") == "instance draining (1012)"
    assert describe_close(None, "") == "connection failed"
    assert describe_close(3999, "x") == "closed (3999: x)"


# ---- a session against a stand-in server ---------------------------------------------------


class StandIn:
    """Plays dashboard_api: welcome, a snapshot per subscribe, then updates. The first
    connection is closed with 1012 (draining) after two updates; the next one must resume."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[str | None] = []
        self.connections = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.headers.append(ws.request.headers.get("Authorization"))
        await self.send(
            ws, spb.ServerMessage(welcome=spb.Welcome(protocol=1, user_id="ann", idle_timeout_s=60))
        )
        request = await self.receive(ws)
        self.requests.append(request)
        if self.connections == 1:
            await self.send(ws, snapshot_message(request["id"], [("AAPL", 10)], {}))
            for version in (11, 12):
                await self.send(ws, update_message("AAPL", version))
            await ws.close(1012, "draining")
            return
        await self.send(ws, snapshot_message(request["id"], [], {"AAPL": (13, 13)}))
        for version in (13, 14):
            await self.send(ws, update_message("AAPL", version))
        await ws.wait_closed()

    async def receive(self, ws: ServerConnection) -> dict[str, Any]:
        frame = await ws.recv()
        if isinstance(frame, str):
            message: dict[str, Any] = json.loads(frame)
            return message
        wire = spb.ClientMessage.FromString(frame)
        assert wire.WhichOneof("kind") == "subscribe"
        return {
            "id": wire.request_id,
            "instruments": list(wire.subscribe.instruments),
            "since": dict(wire.subscribe.since),
        }

    async def send(self, ws: ServerConnection, message: spb.ServerMessage) -> None:
        if self.encoding == "protobuf":
            await ws.send(message.SerializeToString())
        else:
            await ws.send(json.dumps(_as_json(message)))


def snapshot_message(
    request_id: str, states: list[tuple[str, int]], resumed: dict[str, tuple[int, int]]
) -> spb.ServerMessage:
    return spb.ServerMessage(
        snapshot=spb.Snapshot(
            request_id=request_id,
            reason=spb.SNAPSHOT_REASON_SUBSCRIBE,
            states=[pb.InstrumentState(instrument=name, version=version) for name, version in states],
            resumed={
                name: spb.VersionRange(from_version=a, to_version=b) for name, (a, b) in resumed.items()
            },
        )
    )


def update_message(instrument: str, version: int) -> spb.ServerMessage:
    state = pb.InstrumentState(instrument=instrument, version=version, last_price="1")
    state.times.ingest_ns = T0
    return spb.ServerMessage(update=pb.Update(state=state))


def _as_json(message: spb.ServerMessage) -> dict[str, Any]:
    # The stand-in's JSON is the tool's own protobuf -> JSON mapping, checked separately above.
    return decode_frame(message.SerializeToString())


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
async def test_a_session_resumes_after_a_draining_close(encoding: str) -> None:
    stand_in = StandIn(encoding)
    out, err = io.StringIO(), io.StringIO()

    async with asyncio.timeout(10):
        async with serve(stand_in.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            options = Options(
                url=f"ws://127.0.0.1:{port}/ws?user=ann",
                instruments=("AAPL",),
                token="jwt",
                encoding="protobuf" if encoding == "protobuf" else "json",
                max_rate=0.0,
                resume=True,
                count=4,
                stats=False,
                alerts=(),
            )
            clock = iter(range(T0 + MS, T0 + 1000 * MS, MS))
            code = await Session(options, ("AAPL",), out, err, lambda: next(clock)).run()
    assert code == 0
    assert stand_in.connections == 2
    assert stand_in.headers == ["Bearer jwt", "Bearer jwt"]
    expected_path = "/ws?user=ann" + ("&encoding=protobuf" if encoding == "protobuf" else "")
    assert stand_in.paths == [expected_path, expected_path]
    first, second = stand_in.requests
    assert first["instruments"] == ["AAPL"]
    assert not first.get("since")
    assert second["since"] == {"AAPL": 12}
    printed = out.getvalue()
    assert [line.split()[2] for line in printed.splitlines() if " AAPL v" in line] == [
        "v11",
        "v12",
        "v13",
        "v14",
    ]
    assert "resumed [AAPL v13..v13]" in printed
    assert "!" not in printed
    assert "instance draining (1012: draining)" in err.getvalue()
    assert "reconnecting in 0.0s, resuming 1 instruments" in err.getvalue()


async def test_a_session_without_resume_ends_with_the_connection() -> None:
    stand_in = StandIn("json")
    out, err = io.StringIO(), io.StringIO()

    async with asyncio.timeout(10):
        async with serve(stand_in.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            options = parse_options(["--url", f"ws://127.0.0.1:{port}/ws", "AAPL"], {})
            code = await Session(options, ("AAPL",), out, err, lambda: T0).run()
    assert code == 1
    assert stand_in.connections == 1


async def test_a_session_that_cannot_connect() -> None:
    err = io.StringIO()

    async with asyncio.timeout(10):
        options = parse_options(["--url", "ws://127.0.0.1:9/ws", "AAPL"], {})
        code = await Session(options, ("AAPL",), io.StringIO(), err, lambda: T0).run()
    assert code == 1
    assert "cannot connect to ws://127.0.0.1:9/ws" in err.getvalue()


async def test_a_session_creates_its_alerts_once_and_prints_their_events() -> None:
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        for _ in range(2):
            frame = await ws.recv()
            assert isinstance(frame, str)
            received.append(json.loads(frame))
        accepted = {"type": "alert.accepted", "id": received[1]["id"], "alert_id": "x"}
        event = {
            "type": "alert",
            "status": "active",
            "alert": {"alert_id": "x", "instrument": "AAPL", "direction": "above", "price": "190.5"},
        }
        await ws.send(json.dumps(accepted))
        await ws.send(json.dumps(event))
        await ws.close(1000, "bye")

    out = io.StringIO()

    async with asyncio.timeout(10):
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            argv = ["--url", f"ws://127.0.0.1:{port}/ws", "--alert", "AAPL:above:190.5", "--resume", "AAPL"]
            options = parse_options(argv, {})
            code = await Session(options, ("AAPL",), out, io.StringIO(), lambda: T0).run()
    assert code == 0  # 1000: done, even with --resume
    assert [message["type"] for message in received] == ["subscribe", "alert.create"]
    assert received[1] == {
        "type": "alert.create",
        "id": "a2",
        "instrument": "AAPL",
        "direction": "above",
        "price": "190.5",
    }
    assert out.getvalue().splitlines() == [
        "00:00:00.000 alert accepted (a2): x",
        "00:00:00.000 alert active x AAPL above 190.5",
    ]
