"""Every client message of protocol v1, as JSON text and as protobuf, and every error it can earn."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from services.dashboard_api.live.protocol import (
    MAX_VERSION,
    CancelAlert,
    ClientError,
    CreateAlert,
    Limits,
    ListAlerts,
    Ping,
    Subscribe,
    Unsubscribe,
    check_instruments,
    parse_frame,
)
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import stream_pb2 as spb

LIMITS = Limits(max_message_bytes=256, max_instruments=3)
INSTRUMENT_RULE = "expected 1-32 chars of [A-Za-z0-9._:/-]"
TYPES = "subscribe, unsubscribe, ping, alert.create, alert.cancel, alert.list"


def parse(message: dict[str, Any]) -> object:
    return parse_frame(json.dumps(message), LIMITS)


def parse_pb(message: spb.ClientMessage) -> object:
    return parse_frame(message.SerializeToString(), LIMITS)


def code_of(result: object) -> str:
    assert isinstance(result, ClientError), result
    return result.code


# -- JSON ------------------------------------------------------------------------------------


def test_subscribe() -> None:
    frame = '{"type": "subscribe", "instruments": ["AAPL", "BTC-USD", "ES:Z5"]}'
    assert parse_frame(frame, LIMITS) == Subscribe(("AAPL", "BTC-USD", "ES:Z5"))


def test_subscribe_with_everything() -> None:
    message = {
        "type": "subscribe",
        "id": "s2",
        "instruments": ["AAPL", "MSFT"],
        "since": {"AAPL": 1207, "MSFT": 0},
        "max_rate": 4,
    }
    parsed = parse(message)
    assert parsed == Subscribe(("AAPL", "MSFT"), {"AAPL": 1207, "MSFT": 0}, 4.0, "s2")
    assert isinstance(parsed, Subscribe)
    assert isinstance(parsed.max_rate, float)


@pytest.mark.parametrize(("max_rate", "expected"), [(0, 0.0), (0.5, 0.5), (1000, 1000.0), (1000.0, 1000.0)])
def test_max_rate_bounds(max_rate: float, expected: float) -> None:
    parsed = parse({"type": "subscribe", "instruments": ["A"], "max_rate": max_rate})
    assert parsed == Subscribe(("A",), max_rate=expected)


def test_since_may_be_null_or_empty_and_may_leave_instruments_out() -> None:
    for since in (None, {}):
        assert parse({"type": "subscribe", "instruments": ["A"], "since": since}) == Subscribe(("A",))
    parsed = parse({"type": "subscribe", "instruments": ["A", "B"], "since": {"B": MAX_VERSION}})
    assert parsed == Subscribe(("A", "B"), {"B": MAX_VERSION})


@pytest.mark.parametrize("since", [MAX_VERSION + 1, 2**63, 2**64 - 1, 2**64])
def test_since_beyond_an_int64_version_is_refused(since: int) -> None:
    # 2**64 - 1 used to pass, and Redis then refused the stream id "2**64-0": closed with 1013.
    assert MAX_VERSION == 2**63 - 2
    message = {"type": "subscribe", "instruments": ["A"], "since": {"A": since}}
    assert code_of(parse(message)) == "invalid_since"
    if since < 2**64:
        request = spb.SubscribeRequest(instruments=["A"], since={"A": since})
        assert code_of(parse_pb(spb.ClientMessage(subscribe=request))) == "invalid_since"


def test_unsubscribe() -> None:
    assert parse_frame('{"type":"unsubscribe","instruments":["AAPL"]}', LIMITS) == Unsubscribe(("AAPL",))
    assert parse({"type": "unsubscribe", "id": "u1", "instruments": ["MSFT"]}) == Unsubscribe(("MSFT",), "u1")


def test_ping() -> None:
    assert parse({"type": "ping"}) == Ping()
    assert parse({"type": "ping", "id": "p1", "extra": [1, 2]}) == Ping("p1")


def test_alert_messages_pass_their_fields_on() -> None:
    create = {
        "type": "alert.create",
        "id": "a1",
        "instrument": "AAPL",
        "direction": "above",
        "price": "190.5",
    }
    assert parse(create) == CreateAlert({"instrument": "AAPL", "direction": "above", "price": "190.5"}, "a1")
    # Checking them is alert_requests' job: missing ones are None.
    assert parse({"type": "alert.create"}) == CreateAlert(
        {"instrument": None, "direction": None, "price": None}
    )
    assert parse({"type": "alert.cancel", "id": "a2", "alert_id": "x"}) == CancelAlert(
        {"alert_id": "x"}, "a2"
    )
    assert parse({"type": "alert.list", "id": "a3"}) == ListAlerts("a3")


def test_duplicates_are_dropped_keeping_the_first_order() -> None:
    frame = '{"type":"subscribe","instruments":["B","A","B"]}'
    assert parse_frame(frame, LIMITS) == Subscribe(("B", "A"))


def test_a_request_id_of_64_chars_is_fine() -> None:
    assert parse({"type": "ping", "id": "x" * 64}) == Ping("x" * 64)


# -- JSON errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{not json", ClientError("invalid_json", "message is not valid JSON")),
        ("", ClientError("invalid_json", "message is not valid JSON")),
        ("[" * 100 + "]" * 100, ClientError("not_an_object", "message must be a JSON object")),
        ('["subscribe"]', ClientError("not_an_object", "message must be a JSON object")),
        ("42", ClientError("not_an_object", "message must be a JSON object")),
        ('"ping"', ClientError("not_an_object", "message must be a JSON object")),
        ("null", ClientError("not_an_object", "message must be a JSON object")),
        ('{"instruments":["A"]}', ClientError("unknown_type", 'message has no "type"')),
        ('{"type":null}', ClientError("unknown_type", 'message has no "type"')),
        (
            '{"type":"subscribe_all"}',
            ClientError("unknown_type", f"unknown \"type\" 'subscribe_all': expected one of {TYPES}"),
        ),
        (
            '{"type":["ping"]}',
            ClientError("unknown_type", f"unknown \"type\" ['ping']: expected one of {TYPES}"),
        ),
        ('{"type":"subscribe"}', ClientError("invalid_instruments", '"subscribe" needs "instruments"')),
        ('{"type":"unsubscribe"}', ClientError("invalid_instruments", '"unsubscribe" needs "instruments"')),
        (
            '{"type":"unsubscribe","instruments":"AAPL"}',
            ClientError("invalid_instruments", '"instruments" must be a list of instrument names'),
        ),
        (
            '{"type":"subscribe","instruments":null}',
            ClientError("invalid_instruments", '"instruments" must be a list of instrument names'),
        ),
        (
            '{"type":"subscribe","instruments":[]}',
            ClientError("invalid_instruments", '"instruments" must not be empty'),
        ),
        (
            '{"type":"subscribe","instruments":["A","B","C","D"]}',
            ClientError("too_many_instruments", "at most 3 instruments per request, got 4"),
        ),
        (
            '{"type":"subscribe","instruments":["A","has space"]}',
            ClientError("invalid_instruments", f"invalid instrument 'has space': {INSTRUMENT_RULE}"),
        ),
        (
            '{"type":"subscribe","instruments":[17]}',
            ClientError("invalid_instruments", f"invalid instrument 17: {INSTRUMENT_RULE}"),
        ),
        (
            '{"type":"subscribe","instruments":[""]}',
            ClientError("invalid_instruments", f"invalid instrument '': {INSTRUMENT_RULE}"),
        ),
        (
            '{"type":"ping","id":7}',
            ClientError("invalid_request_id", '"id" must be a string of at most 64 chars'),
        ),
    ],
)
def test_errors(frame: str, expected: ClientError) -> None:
    assert parse_frame(frame, LIMITS) == expected


@pytest.mark.parametrize("request_id", [7, None, True, ["a"], {"a": 1}, "x" * 65])
def test_invalid_request_ids(request_id: object) -> None:
    error = parse({"type": "ping", "id": request_id})
    assert error == ClientError("invalid_request_id", '"id" must be a string of at most 64 chars')


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "nope"}, "unknown_type"),
        ({}, "unknown_type"),
        ({"type": "subscribe"}, "invalid_instruments"),
        ({"type": "subscribe", "instruments": ["A B"]}, "invalid_instruments"),
        ({"type": "subscribe", "instruments": ["X" * 33]}, "invalid_instruments"),
        ({"type": "unsubscribe", "instruments": [None]}, "invalid_instruments"),
        ({"type": "subscribe", "instruments": ["A", "B", "C", "D"]}, "too_many_instruments"),
        ({"type": "unsubscribe", "instruments": ["A", "B", "C", "D"]}, "too_many_instruments"),
        ({"type": "subscribe", "instruments": ["A"], "since": []}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": 3}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": "A"}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"B": 1}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": -1}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": True}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": 1.5}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": 1.0}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": "3"}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": None}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "since": {"A": 2**64}}, "invalid_since"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": -1}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": -0.001}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": 1000.5}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": 1001}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": True}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": False}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": "4"}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": None}, "invalid_max_rate"),
        ({"type": "subscribe", "instruments": ["A"], "max_rate": [4]}, "invalid_max_rate"),
    ],
)
def test_error_codes_echo_the_request_id(message: dict[str, Any], code: str) -> None:
    error = parse({**message, "id": "r1"})
    assert isinstance(error, ClientError)
    assert (error.code, error.request_id) == (code, "r1")
    assert parse(message) == ClientError(code, error.reason)  # no id: none echoed


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_max_rates(literal: str) -> None:
    # Python's JSON reader accepts NaN and Infinity, and 1e400 overflows to infinity.
    frame = '{"type":"subscribe","id":"r","instruments":["A"],"max_rate":' + literal + "}"
    assert parse_frame(frame, LIMITS) == ClientError(
        "invalid_max_rate", '"max_rate" must be a number from 0 to 1000', "r"
    )


def test_an_integer_max_rate_too_big_for_a_float_is_an_error_not_a_crash() -> None:
    frame = '{"type":"subscribe","id":"r","instruments":["A"],"max_rate":1' + "0" * 400 + "}"
    assert parse_frame(frame, Limits(max_message_bytes=1024, max_instruments=3)) == ClientError(
        "invalid_max_rate", '"max_rate" must be a number from 0 to 1000', "r"
    )


def test_since_reasons() -> None:
    assert parse({"type": "subscribe", "instruments": ["A"], "since": []}) == ClientError(
        "invalid_since", '"since" must be an object of instrument: version'
    )
    assert parse({"type": "subscribe", "instruments": ["A"], "since": {"B": 1}}) == ClientError(
        "invalid_since", '"since" names \'B\', which is not in "instruments"'
    )
    assert parse({"type": "subscribe", "instruments": ["A"], "since": {"A": -1}}) == ClientError(
        "invalid_since", f'"since" of A must be a version (integer from 0 to {MAX_VERSION})'
    )


def test_long_values_are_cut_short_in_reasons() -> None:
    name = "X" * 100
    error = parse_frame(json.dumps({"type": "subscribe", "instruments": [name]}), LIMITS)
    assert error == ClientError("invalid_instruments", f"invalid instrument '{'X' * 38}…: {INSTRUMENT_RULE}")


def test_too_large_counts_utf8_bytes() -> None:
    # 150 two-byte characters: under 256 characters, over 256 bytes.
    frame = json.dumps({"type": "ping", "pad": "é" * 150}, ensure_ascii=False)
    assert len(frame) < 256 < len(frame.encode())
    assert parse_frame(frame, LIMITS) == ClientError("message_too_large", "message larger than 256 bytes")
    assert parse_frame(" " * 257, LIMITS) == ClientError("message_too_large", "message larger than 256 bytes")
    assert parse_frame('{"type":"ping"}' + " " * (256 - 15), LIMITS) == Ping()
    # Four-byte characters: 66 characters, 258 bytes.
    assert parse_frame('"' + "😀" * 64 + '"', LIMITS) == ClientError(
        "message_too_large", "message larger than 256 bytes"
    )
    assert parse_frame('"' + "😀" * 63 + '"', LIMITS) == ClientError(
        "not_an_object", "message must be a JSON object"
    )


def test_too_large_binary_frames() -> None:
    big = spb.ClientMessage(subscribe=spb.SubscribeRequest(instruments=["A" * 32] * 10))
    assert len(big.SerializeToString()) > 256
    assert parse_pb(big) == ClientError("message_too_large", "message larger than 256 bytes")


def test_check_instruments_for_rest() -> None:
    assert check_instruments(["A", "b.c", "d/e", "f_g", "A"], 5) == ("A", "b.c", "d/e", "f_g")
    assert check_instruments(("A", "B"), 5) == ("A", "B")
    assert check_instruments(["A" * 33], 5) == ClientError(
        "invalid_instruments", f"invalid instrument '{'A' * 33}': {INSTRUMENT_RULE}"
    )


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    limits = Limits(max_message_bytes=1_000_000, max_instruments=3)
    assert parse_frame("[" * 200_000, limits) == ClientError("invalid_json", "message is not valid JSON")


# -- protobuf --------------------------------------------------------------------------------


def test_protobuf_subscribe() -> None:
    message = spb.ClientMessage(
        request_id="s2",
        subscribe=spb.SubscribeRequest(instruments=["AAPL", "MSFT"], since={"AAPL": 1207}, max_rate=4),
    )
    assert parse_pb(message) == Subscribe(("AAPL", "MSFT"), {"AAPL": 1207}, 4.0, "s2")
    plain = spb.ClientMessage(subscribe=spb.SubscribeRequest(instruments=["A", "A"]))
    assert parse_pb(plain) == Subscribe(("A",))


def test_protobuf_unsubscribe_and_ping() -> None:
    unsubscribe = spb.ClientMessage(request_id="u1", unsubscribe=spb.UnsubscribeRequest(instruments=["A"]))
    assert parse_pb(unsubscribe) == Unsubscribe(("A",), "u1")
    assert parse_pb(spb.ClientMessage(request_id="p1", ping=spb.PingRequest())) == Ping("p1")
    assert parse_pb(spb.ClientMessage(ping=spb.PingRequest())) == Ping()


@pytest.mark.parametrize(
    ("direction", "name"),
    [
        (apb.ALERT_DIRECTION_ABOVE, "above"),
        (apb.ALERT_DIRECTION_BELOW, "below"),
        (apb.ALERT_DIRECTION_UNSPECIFIED, ""),
    ],
)
def test_protobuf_create_alert(direction: int, name: str) -> None:
    message = spb.ClientMessage(
        request_id="a1",
        create_alert=spb.CreateAlertRequest(instrument="AAPL", direction=direction, price="190.50"),
    )
    assert parse_pb(message) == CreateAlert(
        {"instrument": "AAPL", "direction": name, "price": "190.50"}, "a1"
    )


def test_protobuf_cancel_and_list_alerts() -> None:
    cancel = spb.ClientMessage(request_id="a2", cancel_alert=spb.CancelAlertRequest(alert_id="x"))
    assert parse_pb(cancel) == CancelAlert({"alert_id": "x"}, "a2")
    listing = spb.ClientMessage(request_id="a3", list_alerts=spb.ListAlertsRequest())
    assert parse_pb(listing) == ListAlerts("a3")


@pytest.mark.parametrize("frame", [b"\xff\xff\xff", b"\x12\x05ab", b"\x0a\x01\xff"])
def test_unreadable_protobuf(frame: bytes) -> None:
    assert parse_frame(frame, LIMITS) == ClientError(
        "invalid_protobuf", "binary frame is not a tapewire.v1.ClientMessage"
    )


def test_json_in_a_binary_frame_is_not_protobuf() -> None:
    assert code_of(parse_frame(b'{"type":"ping"}', LIMITS)) == "invalid_protobuf"


def test_an_empty_protobuf_message_has_no_type() -> None:
    assert parse_frame(b"", LIMITS) == ClientError("unknown_type", 'message has no "type"')
    assert parse_pb(spb.ClientMessage(request_id="r")) == ClientError(
        "unknown_type", 'message has no "type"', "r"
    )


@pytest.mark.parametrize(
    ("subscribe", "code"),
    [
        (spb.SubscribeRequest(), "invalid_instruments"),
        (spb.SubscribeRequest(instruments=["A B"]), "invalid_instruments"),
        (spb.SubscribeRequest(instruments=["A", "B", "C", "D"]), "too_many_instruments"),
        (spb.SubscribeRequest(instruments=["A"], since={"B": 1}), "invalid_since"),
        (spb.SubscribeRequest(instruments=["A"], max_rate=-1), "invalid_max_rate"),
        (spb.SubscribeRequest(instruments=["A"], max_rate=1000.5), "invalid_max_rate"),
        (spb.SubscribeRequest(instruments=["A"], max_rate=math.nan), "invalid_max_rate"),
        (spb.SubscribeRequest(instruments=["A"], max_rate=math.inf), "invalid_max_rate"),
    ],
)
def test_protobuf_subscribe_errors_echo_the_request_id(subscribe: spb.SubscribeRequest, code: str) -> None:
    error = parse_pb(spb.ClientMessage(request_id="r1", subscribe=subscribe))
    assert isinstance(error, ClientError)
    assert (error.code, error.request_id) == (code, "r1")


def test_protobuf_unsubscribe_errors() -> None:
    empty = spb.ClientMessage(request_id="r", unsubscribe=spb.UnsubscribeRequest())
    assert parse_pb(empty) == ClientError("invalid_instruments", '"instruments" must not be empty', "r")


def test_protobuf_request_id_too_long() -> None:
    message = spb.ClientMessage(request_id="x" * 65, ping=spb.PingRequest())
    assert parse_pb(message) == ClientError("invalid_request_id", '"id" must be a string of at most 64 chars')
    assert parse_pb(spb.ClientMessage(request_id="x" * 64, ping=spb.PingRequest())) == Ping("x" * 64)


def test_the_same_command_from_either_encoding() -> None:
    as_json = {"type": "subscribe", "id": "s", "instruments": ["A", "B"], "since": {"A": 3}, "max_rate": 2.5}
    as_pb = spb.ClientMessage(
        request_id="s", subscribe=spb.SubscribeRequest(instruments=["A", "B"], since={"A": 3}, max_rate=2.5)
    )
    assert parse(as_json) == parse_pb(as_pb)
