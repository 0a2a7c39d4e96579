"""Reading a user's alerts from the hash cache_updater keeps in Redis (layout in tapewire/keys.py).

    <prefix>alerts:<user>   hash {alert id: the latest AlertEvent protobuf of that alert}

The hash is per user, so listing is one HGETALL and the user's quota one HVALS; a cancel
finds its alert (and the instrument that routes the command) with one HGET. The hash holds
each alert's latest event, terminal ones too for a while, so "active" is read from the
event's status, not from the field's presence.

An entry that does not decode, or that names another user, is logged and left out: one bad
entry must not take a user's whole list down with it.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

from google.protobuf.message import DecodeError

from tapewire.errors import StoreUnavailable
from tapewire.keys import RedisKeys
from tapewire.redis_client import STORE_ERRORS, AsyncClient
from tapewire.v1 import alerts_pb2 as apb

log = logging.getLogger(__name__)

AlertEvents: TypeAlias = list[apb.AlertEvent]


class AlertStore:
    def __init__(self, redis: AsyncClient, keys: RedisKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def list(self, user_id: str) -> AlertEvents:
        """The latest event of each of the user's alerts, oldest alert first."""
        try:
            entries = await self._redis.hgetall(self._keys.alerts(user_id))
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        events = [
            event
            for field, payload in entries.items()
            if (event := _decode(user_id, _text(field), payload)) is not None
        ]
        events.sort(key=lambda event: (event.alert.created_ns, event.alert.alert_id))
        return events

    async def active_count(self, user_id: str) -> int:
        """How many of the user's alerts the processor holds (status ACTIVE)."""
        try:
            payloads = await self._redis.hvals(self._keys.alerts(user_id))
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return sum(
            1
            for payload in payloads
            if (event := _decode(user_id, None, payload)) is not None
            and event.status == apb.ALERT_STATUS_ACTIVE
        )

    async def find(self, user_id: str, alert_id: str) -> apb.AlertEvent | None:
        """The latest event of one of the user's alerts, None when they have no such alert.

        Whether it may be cancelled is alert_requests.cancellable's call."""
        try:
            payload = await self._redis.hget(self._keys.alerts(user_id), alert_id)
        except STORE_ERRORS as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        if payload is None:
            return None
        return _decode(user_id, alert_id, payload)


def _decode(user_id: str, alert_id: str | None, payload: bytes | str) -> apb.AlertEvent | None:
    event = apb.AlertEvent()
    try:
        event.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
    except DecodeError:
        log.error("unreadable alert event in redis, left out", extra={"user": user_id, "alert_id": alert_id})
        return None
    if event.alert.user_id != user_id or (alert_id is not None and event.alert.alert_id != alert_id):
        log.error(
            "alert event under another user's or alert's key, left out",
            extra={"user": user_id, "alert_id": alert_id, "event_alert_id": event.alert.alert_id},
        )
        return None
    return event


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
