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
just what its clients watch.

On a Redis Cluster (`REDIS_CLUSTER=true`) the instrument and the user are hash tags, so that
an instrument's state, history and channel share one slot (`<prefix>state:{<instrument>}`,
`<channel>:{<instrument>}`), as do a user's two alert keys and channel: the version-guarded
write, the history append and the publish stay one atomic script on one shard, and updates go
out with SPUBLISH to that shard's subscribers only. The markers are per master there
(services/cache_updater/markers.py). The instrument set is one key on one shard, written
apart from the states' script (services/cache_updater/apply.py).
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
    cluster: bool = False

    @classmethod
    def from_settings(cls, redis: RedisSettings) -> RedisKeys:
        return cls(
            prefix=redis.key_prefix,
            channel=redis.updates_channel,
            alerts_channel=redis.alerts_channel,
            cluster=redis.cluster,
        )

    @property
    def publish(self) -> str:
        """The command that publishes an update or an alert event: sharded on a cluster."""
        return "SPUBLISH" if self.cluster else "PUBLISH"

    @property
    def instruments(self) -> str:
        return f"{self.prefix}instruments"

    def state(self, instrument: str) -> str:
        return f"{self.prefix}state:{self._tag(instrument)}"

    def history(self, instrument: str) -> str:
        return f"{self.prefix}history:{self._tag(instrument)}"

    def alerts(self, user: str) -> str:
        return f"{self.prefix}alerts:{self._tag(user)}"

    def alerts_terminal(self, user: str) -> str:
        return f"{self.prefix}alerts_terminal:{self._tag(user)}"

    def alert_events(self, user: str) -> str:
        return f"{self.alerts_channel}:{self._tag(user)}"

    def user_of_alerts_channel(self, channel: str) -> str:
        return self._untag(channel[len(self.alerts_channel) + 1 :])

    def cache_marker(self, partition: int, shard: str = "") -> str:
        """The marker of partition p; on a cluster, of p on the master that `shard` (a hash
        tag) lands on."""
        return f"{self.prefix}cache:partition:{partition}" + (f":{{{shard}}}" if self.cluster else "")

    def updates(self, instrument: str) -> str:
        return f"{self.channel}:{self._tag(instrument)}"

    def instrument_of_channel(self, channel: str) -> str:
        return self._untag(channel[len(self.channel) + 1 :])

    def _tag(self, name: str) -> str:
        # Redis hashes what is between the first `{` and the next `}`, or the whole key when
        # that is empty. The prefixes hold no braces (RedisSettings), and `}` in a name (a user
        # id may hold one) is escaped, so every key of a name hashes exactly the name.
        return "{" + name.replace("%", "%25").replace("}", "%7D") + "}" if self.cluster else name

    def _untag(self, tagged: str) -> str:
        return tagged[1:-1].replace("%7D", "}").replace("%25", "%") if self.cluster else tagged
