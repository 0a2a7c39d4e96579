"""Every Redis key and pub/sub channel tapewire uses, in one place.

    <prefix>state:<instrument>   hash {v: version, s: InstrumentState protobuf}
    <prefix>instruments          set of every instrument with a state
    <prefix>cache:partition:<p>  marker: the states of processed partition p are in this Redis
    <channel>:<instrument>       pub/sub: Update protobuf for every applied change

Updates go to one channel per instrument so that a dashboard_api instance can subscribe to
just what its clients watch; an instance that wants everything pattern-subscribes to
`<channel>:*`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tapewire.settings import RedisSettings

STATE_VERSION_FIELD = "v"
STATE_PAYLOAD_FIELD = "s"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str
    channel: str

    @classmethod
    def from_settings(cls, redis: RedisSettings) -> RedisKeys:
        return cls(prefix=redis.key_prefix, channel=redis.updates_channel)

    @property
    def instruments(self) -> str:
        return f"{self.prefix}instruments"

    def state(self, instrument: str) -> str:
        return f"{self.prefix}state:{instrument}"

    def cache_marker(self, partition: int) -> str:
        return f"{self.prefix}cache:partition:{partition}"

    def updates(self, instrument: str) -> str:
        return f"{self.channel}:{instrument}"

    @property
    def updates_pattern(self) -> str:
        return f"{self.channel}:*"

    def instrument_of_channel(self, channel: str) -> str:
        return channel[len(self.channel) + 1 :]
