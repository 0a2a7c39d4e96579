"""Every Redis key and pub/sub channel tapewire uses, in one place.

    <prefix>state:<instrument>   hash {v: version, s: InstrumentState protobuf}
    <prefix>instruments          set of every instrument with a state
    <prefix>cache:partition:<p>  marker: the states of processed partition p are in this Redis
    <prefix>history:<instrument> stream of recent Update protobufs, entry id `<version>-0`
                                 (field u), trimmed to about REDIS_HISTORY_LENGTH entries
    <prefix>alerts:<user>        hash {alert id: latest AlertEvent protobuf} of one user
    <prefix>alerts_terminal:<user> zset {alert id: event ns} of the user's finished alerts (trimmed)
    <channel>:<instrument>       pub/sub: Update protobuf for every applied change
    <alerts_channel>:<user>      pub/sub: AlertEvent protobuf for every change of u's alerts

A stream entry's id is the state's version, so "everything after version v" is one
XRANGE from `v+1`, and a first entry above v+1 proves the history no longer reaches back.

Updates go to one channel per instrument so that a dashboard_api instance can subscribe to
just what its clients watch; an instance that wants everything pattern-subscribes to
`<channel>:*`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tapewire.settings import RedisSettings

STATE_VERSION_FIELD = "v"
STATE_PAYLOAD_FIELD = "s"
HISTORY_UPDATE_FIELD = "u"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str
    channel: str
    alerts_channel: str = "tt_alerts"

    @classmethod
    def from_settings(cls, redis: RedisSettings) -> RedisKeys:
        return cls(
            prefix=redis.key_prefix, channel=redis.updates_channel, alerts_channel=redis.alerts_channel
        )

    @property
    def instruments(self) -> str:
        return f"{self.prefix}instruments"

    def state(self, instrument: str) -> str:
        return f"{self.prefix}state:{instrument}"

    def history(self, instrument: str) -> str:
        return f"{self.prefix}history:{instrument}"

    def alerts(self, user: str) -> str:
        return f"{self.prefix}alerts:{user}"

    def alerts_terminal(self, user: str) -> str:
        return f"{self.prefix}alerts_terminal:{user}"

    def alert_events(self, user: str) -> str:
        return f"{self.alerts_channel}:{user}"

    def user_of_alerts_channel(self, channel: str) -> str:
        return channel[len(self.alerts_channel) + 1 :]

    def cache_marker(self, partition: int) -> str:
        return f"{self.prefix}cache:partition:{partition}"

    def updates(self, instrument: str) -> str:
        return f"{self.channel}:{instrument}"

    @property
    def updates_pattern(self) -> str:
        return f"{self.channel}:*"

    def instrument_of_channel(self, channel: str) -> str:
        return channel[len(self.channel) + 1 :]
