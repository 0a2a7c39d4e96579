"""Price-alert requests from clients: the rules they must follow (pure, no I/O).

    {"type": "alert.create", "instrument": "AAPL", "direction": "above", "price": "190.50"}
    {"type": "alert.cancel", "alert_id": "0b6c3e0e-5d1e-4a8e-9d7c-2f1e8d3b7a11"}

Both JSON objects and their protobuf twins (`CreateAlertRequest`, `CancelAlertRequest`) go
through the same checks, so a WebSocket client and a gRPC client are refused alike. What fails
a rule becomes a `ClientError` with a stable code from docs/websocket.md.

Prices are decimal strings, never JSON numbers: a number would pass through a binary float
and 190.1 would not be 190.1 any more. A price is kept within what a venue can quote (at
most `MAX_PRICE_DIGITS` significant digits, between `MIN_PRICE` and `MAX_PRICE`) so that the
processor's exact comparisons stay cheap and an absurd alert is refused here, at the door,
rather than by the processor after a round trip through Kafka. It is forwarded in the
canonical form of tapewire.decimals ("190.50" becomes "190.5").

Whether the user may still create one (`check_quota`) or may cancel this one (`cancellable`)
depends on their stored alerts; the session reads them (alerts/store.py) and asks here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from tapewire import decimals
from tapewire.ticks import INSTRUMENT_PATTERN
from tapewire.v1 import alerts_pb2 as apb
from tapewire.v1 import stream_pb2 as spb

# One error type and one way of echoing client input for the whole protocol.
from ..live.protocol import INVALID_ALERT, ClientError
from ..live.protocol import shown as _shown

TOO_MANY_ALERTS = "too_many_alerts"
ALERT_NOT_FOUND = "alert_not_found"

# 18 significant digits fit an int64 mantissa; no venue quotes more.
MAX_PRICE_DIGITS = 18
MIN_PRICE = Decimal("1e-12")
MAX_PRICE = Decimal("1e15")
_MIN_TEXT, _MAX_TEXT = decimals.fmt(MIN_PRICE), decimals.fmt(MAX_PRICE)
# Longer text than this is not a price anyone meant; it is refused before parsing.
MAX_PRICE_CHARS = 40
# Plain decimal notation with an optional, short exponent. No sign, no spaces, no "_"
# (all of which Decimal() would accept), no NaN or Infinity. Matched with fullmatch: `$` alone
# also matches before a trailing newline.
_PRICE_TEXT = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?$")
# The longest spelling of a UUID uuid.UUID() accepts ("urn:uuid:" + 36 chars).
_MAX_ALERT_ID_CHARS = 45

Direction = Literal["above", "below"]

DIRECTION_TO_PROTO: Mapping[Direction, apb.AlertDirection] = {
    "above": apb.ALERT_DIRECTION_ABOVE,
    "below": apb.ALERT_DIRECTION_BELOW,
}
_DIRECTION_FROM_PROTO: Mapping[int, Direction] = {value: name for name, value in DIRECTION_TO_PROTO.items()}


@dataclass(frozen=True, slots=True)
class CreateAlert:
    """A valid `alert.create`: `price` is positive and within bounds."""

    instrument: str
    direction: Direction
    price: Decimal

    @property
    def price_text(self) -> str:
        """The price as it goes on the wire: canonical, no exponent ("190.5")."""
        return decimals.fmt(self.price)


@dataclass(frozen=True, slots=True)
class CancelAlert:
    """A well-formed `alert.cancel`: `alert_id` in canonical UUID form (lowercase, hyphens)."""

    alert_id: str


def parse_create(request: Mapping[str, object] | spb.CreateAlertRequest) -> CreateAlert | ClientError:
    """The alert asked for by a JSON `alert.create` object or a `CreateAlertRequest`."""
    if isinstance(request, spb.CreateAlertRequest):
        direction = _DIRECTION_FROM_PROTO.get(request.direction, _enum_name(request.direction))
        return _create(request.instrument, direction, request.price)
    return _create(request.get("instrument"), request.get("direction"), request.get("price"))


def parse_cancel(request: Mapping[str, object] | spb.CancelAlertRequest) -> CancelAlert | ClientError:
    """The alert named by a JSON `alert.cancel` object or a `CancelAlertRequest`."""
    value = request.alert_id if isinstance(request, spb.CancelAlertRequest) else request.get("alert_id")
    alert_id = parse_alert_id(value)
    if alert_id is None:
        return ClientError(INVALID_ALERT, f'"alert_id" must be a UUID string, got {_shown(value)}')
    return CancelAlert(alert_id)


def parse_alert_id(value: object) -> str | None:
    """`value` as a canonical UUID string, or None when it is not a UUID."""
    if not isinstance(value, str) or len(value) > _MAX_ALERT_ID_CHARS:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def parse_price(value: object) -> Decimal | ClientError:
    """A price: a decimal string, > 0, within MIN_PRICE..MAX_PRICE and MAX_PRICE_DIGITS digits."""
    if not isinstance(value, str):
        return ClientError(
            INVALID_ALERT, f'"price" must be a decimal string such as "190.50", got {_shown(value)}'
        )
    if len(value) > MAX_PRICE_CHARS or not _PRICE_TEXT.fullmatch(value):
        return ClientError(INVALID_ALERT, f'"price" {_shown(value)} is not a decimal number')
    price = decimals.parse(value)
    if price is None:
        return ClientError(INVALID_ALERT, f'"price" {_shown(value)} is not a decimal number')
    if price <= 0:
        return ClientError(INVALID_ALERT, f'"price" must be > 0, got {_shown(value)}')
    if not MIN_PRICE <= price < MAX_PRICE:
        return ClientError(
            INVALID_ALERT, f'"price" must be at least {_MIN_TEXT} and below {_MAX_TEXT}, got {_shown(value)}'
        )
    if len(price.normalize(decimals.CONTEXT).as_tuple().digits) > MAX_PRICE_DIGITS:
        return ClientError(
            INVALID_ALERT, f'"price" has more than {MAX_PRICE_DIGITS} significant digits: {_shown(value)}'
        )
    return price


def check_quota(active: int, limit: int) -> ClientError | None:
    """Refuse a new alert when the user already has `limit` active ones."""
    if active >= limit:
        return ClientError(
            TOO_MANY_ALERTS, f"at most {limit} active alerts per user: cancel one or wait for one to trigger"
        )
    return None


def cancellable(event: apb.AlertEvent | None, user_id: str, alert_id: str) -> apb.Alert | ClientError:
    """The alert to cancel, if `user_id` owns it and it is still active.

    A missing alert, someone else's and a finished one all get the same answer: telling them
    apart would let a user probe for other users' alert ids."""
    if event is None or event.alert.user_id != user_id or event.alert.alert_id != alert_id:
        return ClientError(ALERT_NOT_FOUND, f"no active alert {alert_id} of yours")
    if event.status != apb.ALERT_STATUS_ACTIVE:
        return ClientError(ALERT_NOT_FOUND, f"no active alert {alert_id} of yours")
    return event.alert


def _create(instrument: object, direction: object, price_text: object) -> CreateAlert | ClientError:
    if not isinstance(instrument, str) or not INSTRUMENT_PATTERN.fullmatch(instrument):
        return ClientError(
            INVALID_ALERT, f'"instrument" {_shown(instrument)} must be 1-32 chars of [A-Za-z0-9._:/-]'
        )
    checked = _direction(direction)
    if checked is None:
        return ClientError(INVALID_ALERT, f'"direction" must be "above" or "below", got {_shown(direction)}')
    price = parse_price(price_text)
    if isinstance(price, ClientError):
        return price
    return CreateAlert(instrument, checked, price)


def _direction(value: object) -> Direction | None:
    if value == "above":
        return "above"
    if value == "below":
        return "below"
    return None


def _enum_name(value: int) -> str:
    try:
        return apb.AlertDirection.Name(value)
    except ValueError:
        return str(value)
