"""Price alerts as a session sees them: check the request, then queue a command or read the list.

create: validate, check the user's quota against the alerts in Redis, queue the command for
Kafka and answer `alert.accepted` with the new id at once (or `busy`). The processor's events
come back through Redis pub/sub to every session of the user (live/relay.py).
cancel: only an ACTIVE alert of the user's own; the command is routed by its instrument.
list: the latest event of each of the user's alerts, from Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tapewire.errors import StoreUnavailable
from tapewire.v1 import stream_pb2

from ..live import protocol
from . import requests as alert_requests
from .commands import AlertCommands, Busy
from .store import AlertStore


class Alerts:
    def __init__(self, commands: AlertCommands, store: AlertStore, max_alerts_per_user: int) -> None:
        self._commands = commands
        self._store = store
        self._max_alerts_per_user = max_alerts_per_user

    async def handle(
        self,
        user_id: str,
        command: protocol.CreateAlert | protocol.CancelAlert | protocol.ListAlerts,
        on_failed: Callable[[str, str], None],
    ) -> stream_pb2.ServerMessage | protocol.ClientError:
        try:
            if isinstance(command, protocol.CreateAlert):
                return await self._create(user_id, command, on_failed)
            if isinstance(command, protocol.CancelAlert):
                return await self._cancel(user_id, command, on_failed)
            listing = stream_pb2.ServerMessage()
            listing.alert_list.request_id = command.request_id
            listing.alert_list.alerts.extend(await self._store.list(user_id))
            return listing
        except StoreUnavailable:
            return protocol.ClientError(
                protocol.UNAVAILABLE, "alerts are unavailable (Redis): try again", command.request_id
            )
        except Busy:
            return protocol.ClientError(
                protocol.BUSY, "too many alert commands queued: try again shortly", command.request_id
            )

    async def _create(
        self, user_id: str, command: protocol.CreateAlert, on_failed: Callable[[str, str], None]
    ) -> stream_pb2.ServerMessage | protocol.ClientError:
        request = alert_requests.parse_create(command.fields)
        if isinstance(request, protocol.ClientError):
            return replace(request, request_id=command.request_id)
        over = alert_requests.check_quota(await self._store.active_count(user_id), self._max_alerts_per_user)
        if over is not None:
            return replace(over, request_id=command.request_id)
        alert_id = self._commands.submit_create(
            user_id, request.instrument, request.direction, request.price, on_failed
        )
        accepted = stream_pb2.ServerMessage()
        accepted.alert_accepted.request_id = command.request_id
        accepted.alert_accepted.alert_id = alert_id
        return accepted

    async def _cancel(
        self, user_id: str, command: protocol.CancelAlert, on_failed: Callable[[str, str], None]
    ) -> stream_pb2.ServerMessage | protocol.ClientError:
        request = alert_requests.parse_cancel(command.fields)
        if isinstance(request, protocol.ClientError):
            return replace(request, request_id=command.request_id)
        found = alert_requests.cancellable(
            await self._store.find(user_id, request.alert_id), user_id, request.alert_id
        )
        if isinstance(found, protocol.ClientError):
            return replace(found, request_id=command.request_id)
        self._commands.submit_cancel(user_id, request.alert_id, found.instrument, on_failed)
        accepted = stream_pb2.ServerMessage()
        accepted.alert_accepted.request_id = command.request_id
        accepted.alert_accepted.alert_id = request.alert_id
        return accepted
