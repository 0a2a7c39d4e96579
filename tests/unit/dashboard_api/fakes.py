"""Test doubles shared by dashboard_api's unit tests."""

from __future__ import annotations

from typing import Any, cast

from services.dashboard_api.live.relay import Relay
from tapewire.keys import RedisKeys

KEYS = RedisKeys(prefix="p:", channel="chan", alerts_channel="alerts")


class FakeConnection:
    """The relay's pub/sub connection without Redis. It records commands and confirms them at
    once, like a healthy Redis, when `auto_confirm`; else only when `confirm()` is called."""

    def __init__(self, relay: Relay, auto_confirm: bool = True) -> None:
        self.relay = relay
        self.auto_confirm = auto_confirm
        self.commands: list[tuple[str, tuple[str, ...]]] = []
        self.unconfirmed: list[tuple[str, str]] = []

    def subscribe(self, names: list[str]) -> None:
        self._record("subscribe", names)

    def unsubscribe(self, names: list[str]) -> None:
        self._record("unsubscribe", names)

    def _record(self, command: str, names: list[str]) -> None:
        self.commands.append((command, tuple(names)))
        self.unconfirmed += [(command, name) for name in names]
        if self.auto_confirm:
            self.confirm()

    def confirm(self) -> None:
        pending, self.unconfirmed = self.unconfirmed, []
        for command, name in pending:
            self.relay._on_confirmation(command, name)


def connect(relay: Relay, auto_confirm: bool = True) -> FakeConnection:
    """What the relay's listener does once the pub/sub connection is up, without Redis."""
    pubsub = FakeConnection(relay, auto_confirm)
    relay._connection = cast(Any, pubsub)
    relay._on_confirmation("subscribe", KEYS.channel)
    return pubsub
