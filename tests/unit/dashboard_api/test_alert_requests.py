"""Every rule of alert.create and alert.cancel, for JSON and protobuf requests alike."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from services.dashboard_api.alerts.requests import (
    ALERT_NOT_FOUND,
    INVALID_ALERT,
    TOO_MANY_ALERTS,
    CancelAlert,
    ClientError,
    CreateAlert,
    cancellable,
    check_quota,
    parse_alert_id,
    parse_cancel,
    parse_create,
    parse_price,
)
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import stream_pb2 as spb

ALERT_ID = "0b6c3e0e-5d1e-4a8e-9d7c-2f1e8d3b7a11"


def create(**fields: object) -> dict[str, object]:
    return {
        "type": "alert.create",
        "id": "a1",
        "instrument": "AAPL",
        "direction": "above",
        "price": "190.50",
    } | fields


def code_of(result: object) -> str:
    assert isinstance(result, ClientError), result
    return result.code


def test_a_valid_create() -> None:
    parsed = parse_create(create())
    assert parsed == CreateAlert("AAPL", "above", Decimal("190.50"))
    assert isinstance(parsed, CreateAlert)
    assert parsed.price_text == "190.5"


@pytest.mark.parametrize("instrument", ["ES.FUT", "BTC-USD", "ES:Z5", "a/b_c", "X" * 32])
def test_every_valid_instrument_name(instrument: str) -> None:
    assert parse_create(create(instrument=instrument)) == CreateAlert(instrument, "above", Decimal("190.5"))


def test_below() -> None:
    assert parse_create(create(direction="below")) == CreateAlert("AAPL", "below", Decimal("190.5"))


@pytest.mark.parametrize("instrument", [None, "", "X" * 33, "a b", "AAPL\n", 7, ["AAPL"], "é"])
def test_bad_instruments(instrument: object) -> None:
    request = create(instrument=instrument)
    result = parse_create(request)
    assert code_of(result) == INVALID_ALERT
    assert isinstance(result, ClientError)
    assert '"instrument"' in result.reason


def test_missing_instrument() -> None:
    request = create()
    del request["instrument"]
    assert code_of(parse_create(request)) == INVALID_ALERT


@pytest.mark.parametrize("direction", [None, "", "ABOVE", "up", 1, True])
def test_bad_directions(direction: object) -> None:
    result = parse_create(create(direction=direction))
    assert code_of(result) == INVALID_ALERT
    assert isinstance(result, ClientError)
    assert '"direction"' in result.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("190.50", "190.5"),
        ("1", "1"),
        ("0.0001", "0.0001"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1.5e2", "150"),
        ("15E-1", "1.5"),
        ("0.000000000001", "0.000000000001"),
        ("999999999999999.999", "999999999999999.999"),
        ("12345678.9012345678", "12345678.9012345678"),  # 18 significant digits
    ],
)
def test_prices_accepted(text: str, expected: str) -> None:
    parsed = parse_create(create(price=text))
    assert isinstance(parsed, CreateAlert), parsed
    assert parsed.price_text == expected


@pytest.mark.parametrize(
    "price",
    [
        None,  # missing
        190.5,  # a JSON number: would have gone through a binary float
        190,
        True,
        "",
        " 190.5",
        "190.5 ",
        "190.5\n",
        "+190.5",
        "-190.5",
        "0",
        "0.000",
        "0e5",
        "1_000",
        "NaN",
        "Infinity",
        "1e",
        "1e1000",  # exponent longer than 3 digits
        "0x10",
        "1,5",
        "190.5.1",
        "1" * 41,  # longer than MAX_PRICE_CHARS
        "0.0000000000001",  # below MIN_PRICE
        "1e15",  # not below MAX_PRICE
        "1000000000000000",
        "1e-13",
        "1.0000000000000000001",  # 20 significant digits
        "123.4567890123456789",  # 19
    ],
)
def test_prices_refused(price: object) -> None:
    result = parse_create(create(price=price))
    assert code_of(result) == INVALID_ALERT
    assert isinstance(result, ClientError)
    assert '"price"' in result.reason


def test_trailing_zeros_do_not_count_as_significant_digits() -> None:
    assert parse_price("1.000000000000000000000000") == Decimal(1)


def test_long_reasons_are_cut_short() -> None:
    result = parse_create(create(instrument="Z" * 500))
    assert isinstance(result, ClientError)
    assert len(result.reason) < 120


def test_a_valid_create_in_protobuf() -> None:
    request = spb.CreateAlertRequest(instrument="MSFT", direction=apb.ALERT_DIRECTION_BELOW, price="410.25")
    assert parse_create(request) == CreateAlert("MSFT", "below", Decimal("410.25"))


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"instrument": "", "direction": apb.ALERT_DIRECTION_ABOVE, "price": "1"}, '"instrument"'),
        ({"instrument": "AAPL", "price": "1"}, "ALERT_DIRECTION_UNSPECIFIED"),
        ({"instrument": "AAPL", "direction": 7, "price": "1"}, "7"),
        ({"instrument": "AAPL", "direction": apb.ALERT_DIRECTION_ABOVE}, '"price"'),
        ({"instrument": "AAPL", "direction": apb.ALERT_DIRECTION_ABOVE, "price": "-1"}, '"price"'),
    ],
)
def test_bad_creates_in_protobuf(fields: dict[str, object], mentions: str) -> None:
    result = parse_create(spb.CreateAlertRequest(**fields))  # type: ignore[arg-type]
    assert code_of(result) == INVALID_ALERT
    assert isinstance(result, ClientError)
    assert mentions in result.reason


def test_a_valid_cancel() -> None:
    assert parse_cancel({"type": "alert.cancel", "alert_id": ALERT_ID}) == CancelAlert(ALERT_ID)
    assert parse_cancel(spb.CancelAlertRequest(alert_id=ALERT_ID)) == CancelAlert(ALERT_ID)


@pytest.mark.parametrize(
    "spelling", [ALERT_ID.upper(), ALERT_ID.replace("-", ""), "{" + ALERT_ID + "}", "urn:uuid:" + ALERT_ID]
)
def test_cancel_ids_are_made_canonical(spelling: str) -> None:
    assert parse_cancel({"alert_id": spelling}) == CancelAlert(ALERT_ID)


@pytest.mark.parametrize(
    "alert_id",
    [None, "", "42", 42, "not-a-uuid", ALERT_ID + "0", ALERT_ID[:-1], " " * 10 + ALERT_ID, [ALERT_ID]],
)
def test_bad_cancels(alert_id: object) -> None:
    result = parse_cancel({"alert_id": alert_id})
    assert code_of(result) == INVALID_ALERT
    assert isinstance(result, ClientError)
    assert '"alert_id"' in result.reason


def test_bad_cancel_in_protobuf() -> None:
    assert code_of(parse_cancel(spb.CancelAlertRequest())) == INVALID_ALERT
    assert code_of(parse_cancel(spb.CancelAlertRequest(alert_id="x"))) == INVALID_ALERT


def test_parse_alert_id() -> None:
    fresh = uuid.uuid4()
    assert parse_alert_id(str(fresh)) == str(fresh)
    assert parse_alert_id(fresh) is None  # only strings come from clients


def test_quota() -> None:
    assert check_quota(0, 1) is None
    assert check_quota(99, 100) is None
    assert code_of(check_quota(100, 100)) == TOO_MANY_ALERTS
    assert code_of(check_quota(150, 100)) == TOO_MANY_ALERTS


def event(status: apb.AlertStatus = apb.ALERT_STATUS_ACTIVE, user_id: str = "ann") -> apb.AlertEvent:
    alert = apb.Alert(alert_id=ALERT_ID, user_id=user_id, instrument="AAPL", price="1")
    return apb.AlertEvent(alert=alert, status=status)


def test_the_owner_may_cancel_an_active_alert() -> None:
    found = cancellable(event(), "ann", ALERT_ID)
    assert isinstance(found, apb.Alert)
    assert found.instrument == "AAPL"


@pytest.mark.parametrize(
    "found",
    [
        None,
        event(user_id="bob"),
        event(apb.ALERT_STATUS_TRIGGERED),
        event(apb.ALERT_STATUS_CANCELLED),
        event(apb.ALERT_STATUS_REJECTED),
        event(apb.ALERT_STATUS_UNSPECIFIED),
    ],
)
def test_everything_else_is_not_found_alike(found: apb.AlertEvent | None) -> None:
    result = cancellable(found, "ann", ALERT_ID)
    assert result == ClientError(ALERT_NOT_FOUND, f"no active alert {ALERT_ID} of yours")


def test_an_event_under_another_alerts_id_is_not_found() -> None:
    assert code_of(cancellable(event(), "ann", str(uuid.uuid4()))) == ALERT_NOT_FOUND
