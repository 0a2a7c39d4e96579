from __future__ import annotations

import json

import pytest

from services.dashboard_api.protocol import (
    ClientError,
    Limits,
    Ping,
    Subscribe,
    Unsubscribe,
    check_instruments,
    parse_frame,
)

LIMITS = Limits(max_message_bytes=256, max_instruments=3)


def test_subscribe() -> None:
    frame = '{"type": "subscribe", "instruments": ["AAPL", "BTC-USD", "ES:Z5"]}'
    assert parse_frame(frame, LIMITS) == Subscribe(("AAPL", "BTC-USD", "ES:Z5"))


def test_unsubscribe() -> None:
    assert parse_frame('{"type":"unsubscribe","instruments":["AAPL"]}', LIMITS) == Unsubscribe(("AAPL",))


def test_ping_ignores_extra_fields() -> None:
    assert parse_frame('{"type":"ping","id":7}', LIMITS) == Ping()


def test_duplicates_are_dropped_keeping_the_first_order() -> None:
    frame = '{"type":"subscribe","instruments":["B","A","B"]}'
    assert parse_frame(frame, LIMITS) == Subscribe(("B", "A"))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{not json", ClientError("invalid_json", "message is not valid JSON")),
        ("", ClientError("invalid_json", "message is not valid JSON")),
        ("[" * 100 + "]" * 100, ClientError("not_an_object", "message must be a JSON object")),
        ('["subscribe"]', ClientError("not_an_object", "message must be a JSON object")),
        ("42", ClientError("not_an_object", "message must be a JSON object")),
        ('{"instruments":["A"]}', ClientError("unknown_type", 'message has no "type"')),
        (
            '{"type":"subscribe_all"}',
            ClientError(
                "unknown_type", "unknown \"type\" 'subscribe_all': expected subscribe, unsubscribe or ping"
            ),
        ),
        (
            '{"type":["ping"]}',
            ClientError("unknown_type", "unknown \"type\" ['ping']: expected subscribe, unsubscribe or ping"),
        ),
        ('{"type":"subscribe"}', ClientError("invalid_instruments", '"subscribe" needs "instruments"')),
        (
            '{"type":"unsubscribe","instruments":"AAPL"}',
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
            ClientError(
                "invalid_instruments",
                "invalid instrument 'has space': expected 1-32 chars of [A-Za-z0-9._:/-]",
            ),
        ),
        (
            '{"type":"subscribe","instruments":[17]}',
            ClientError(
                "invalid_instruments", "invalid instrument 17: expected 1-32 chars of [A-Za-z0-9._:/-]"
            ),
        ),
        (
            '{"type":"subscribe","instruments":[""]}',
            ClientError(
                "invalid_instruments", "invalid instrument '': expected 1-32 chars of [A-Za-z0-9._:/-]"
            ),
        ),
    ],
)
def test_errors(frame: str, expected: ClientError) -> None:
    assert parse_frame(frame, LIMITS) == expected


def test_long_values_are_cut_short_in_reasons() -> None:
    name = "X" * 100
    error = parse_frame(json.dumps({"type": "subscribe", "instruments": [name]}), LIMITS)
    assert error == ClientError(
        "invalid_instruments", f"invalid instrument '{'X' * 38}…: expected 1-32 chars of [A-Za-z0-9._:/-]"
    )


def test_too_large_counts_utf8_bytes() -> None:
    # 150 two-byte characters: under 256 characters, over 256 bytes.
    frame = json.dumps({"type": "ping", "pad": "é" * 150}, ensure_ascii=False)
    assert len(frame) < 256 < len(frame.encode())
    assert parse_frame(frame, LIMITS) == ClientError("message_too_large", "message larger than 256 bytes")
    assert parse_frame(" " * 257, LIMITS) == ClientError("message_too_large", "message larger than 256 bytes")
    assert parse_frame('{"type":"ping"}' + " " * (256 - 15), LIMITS) == Ping()


def test_binary_frames_are_refused() -> None:
    assert parse_frame(b'{"type":"ping"}', LIMITS) == ClientError(
        "binary_not_supported", "binary frames are not supported: send JSON as text"
    )


def test_check_instruments_for_rest() -> None:
    assert check_instruments(["A", "b.c", "d/e", "f_g", "A"], 5) == ("A", "b.c", "d/e", "f_g")
    assert check_instruments(["A" * 33], 5) == ClientError(
        "invalid_instruments", f"invalid instrument '{'A' * 33}': expected 1-32 chars of [A-Za-z0-9._:/-]"
    )


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    limits = Limits(max_message_bytes=1_000_000, max_instruments=3)
    assert parse_frame("[" * 200_000, limits) == ClientError("invalid_json", "message is not valid JSON")
