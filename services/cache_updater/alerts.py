"""Applying an alert event to Redis: forward only, bounded per user, a notification per change.

Redis layout, per user u (see tapewire/keys.py):

    <prefix>alerts:<u>           hash {alert id: latest AlertEvent protobuf}
    <prefix>alerts_terminal:<u>  sorted set {alert id of every terminal entry: its event_ns}
    <alerts_channel>:<u>         pub/sub: the AlertEvent protobuf of every change

Rules, all in one Lua script so that Redis applies them atomically:
- **forward only**: an event is written only if it moves its alert forward, ACTIVE before any
  terminal status (TRIGGERED, CANCELLED, REJECTED), and a terminal status never changes. The
  stored status is read from the stored event itself (field 2 of the protobuf), so the hash
  stays the single truth. A replay after a crash, a duplicate, or an ACTIVE arriving late is a
  no-op and publishes nothing;
- **a notification per change**, published only when the event was written;
- **bounded**: at most `kept` terminal entries per user, the oldest (by event time) dropped
  first; active entries are never dropped. While the user has an active alert both keys are
  kept; once every entry is terminal, both expire `ttl_s` after the last change (Redis 7.0 has
  no per-field expiry, hence one TTL for the whole hash). An entry is active exactly when it is
  in the hash and not in the sorted set, so "has an active alert" is HLEN > ZCARD.

The event is stored as the processor wrote it, with one stamp: `times.cached_ns` when it carries
stage times (TRIGGERED), like the states.

Restore after a Redis loss (run.py): the processor's alert changelog `tt_processor_alerts` holds
every instrument's *active* alerts as an AlertBook; `restored_events` turns those books into the
ACTIVE events the processor emitted when it accepted each alert, and they go through the same
script, so an alert that moved on meanwhile (TRIGGERED or CANCELLED by a live event) stays where
it is. Terminal alerts are in no book: a user's history of triggered, cancelled and rejected
alerts does not come back after a loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tapewire.keys import RedisKeys
from tapewire.v1 import alerts_pb2 as apb

ACTIVE = apb.ALERT_STATUS_ACTIVE
# The key of the processor's position record in its alert changelog, which is not a book
# (services/processor/alert_codec.py COMMANDS_POSITION_KEY; services share only tapewire/, so it
# is repeated here, and a unit test checks the two agree).
COMMANDS_POSITION_KEY = b"#commands"
KNOWN_STATUSES = frozenset(
    (
        apb.ALERT_STATUS_ACTIVE,
        apb.ALERT_STATUS_TRIGGERED,
        apb.ALERT_STATUS_CANCELLED,
        apb.ALERT_STATUS_REJECTED,
    )
)


# KEYS: the user's alerts hash, the user's terminal sorted set.
# ARGV: alert id, status, event bytes, channel, ttl seconds, terminal entries kept, event time.
# Returns 1 when written (and published), 0 when the stored status is the same or further on.
# Lua numbers are doubles: exact for statuses and lengths; event times lose their last digits,
# which only matters for the order of two alerts ended within the same ~microsecond.
def apply_alert_event(publish: str) -> str:
    """The script, `publish` being PUBLISH or SPUBLISH (a cluster: tapewire/keys.py)."""
    return f"""
local function varint(s, i)
  local value, scale = 0, 1
  while true do
    local byte = string.byte(s, i)
    if byte == nil then return nil, i end
    value = value + (byte % 128) * scale
    i = i + 1
    if byte < 128 then return value, i end
    scale = scale * 128
  end
end

-- The status (field 2, a varint) of a stored AlertEvent; 0 when it has none.
local function status_of(event)
  local i, status = 1, 0
  while i <= #event do
    local tag, value
    tag, i = varint(event, i)
    if tag == nil then break end
    local field, wire = math.floor(tag / 8), tag % 8
    if wire == 0 then
      value, i = varint(event, i)
      if value == nil then break end
      if field == 2 then status = value end
    elseif wire == 2 then
      value, i = varint(event, i)
      if value == nil then break end
      i = i + value
    elseif wire == 1 then
      i = i + 8
    elseif wire == 5 then
      i = i + 4
    else
      break
    end
  end
  return status
end

-- 0: nothing, 1: active, 2: terminal.
local function rank(status)
  if status == {ACTIVE} then return 1 end
  if status > {ACTIVE} then return 2 end
  return 0
end

local new = rank(tonumber(ARGV[2]))
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and rank(status_of(stored)) >= new then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if new == 2 then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
  local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #oldest, 2 do
      redis.call('HDEL', KEYS[1], oldest[i])
    end
  end
end
if redis.call('HLEN', KEYS[1]) > redis.call('ZCARD', KEYS[2]) then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('{publish}', ARGV[4], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class AlertRetention:
    """How long and how many terminal alerts are kept per user (see the module docstring)."""

    ttl_s: int = 7 * 86_400
    kept: int = 100


DEFAULT_RETENTION = AlertRetention()


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One alert event ready for the script: its keys and arguments."""

    user_id: str
    alert_id: str
    keys: tuple[str, str]
    args: tuple[str, int, bytes, str, int, int, int]


def terminal_alerts_key(keys: RedisKeys, user: str) -> str:
    """`<prefix>alerts_terminal:<user>` (tapewire/keys.py)."""
    return keys.alerts_terminal(user)


def invalid_reason(event: apb.AlertEvent) -> str | None:
    """Why an event cannot be cached (it addresses no user or alert, or has no known status)."""
    if not event.alert.user_id or not event.alert.alert_id:
        return "no user id or alert id"
    if event.status not in KNOWN_STATUSES:
        return f"unknown status {event.status}"
    return None


def prepare_alert(
    event: apb.AlertEvent, keys: RedisKeys, cached_ns: int, retention: AlertRetention
) -> AlertChange:
    """Stamp the cache time (when the event carries stage times) and build the script call."""
    if event.HasField("times"):
        event.times.cached_ns = cached_ns
    user, alert_id = event.alert.user_id, event.alert.alert_id
    return AlertChange(
        user_id=user,
        alert_id=alert_id,
        keys=(keys.alerts(user), terminal_alerts_key(keys, user)),
        args=(
            alert_id,
            event.status,
            event.SerializeToString(),
            keys.alert_events(user),
            retention.ttl_s,
            retention.kept,
            event.event_ns or cached_ns,
        ),
    )


def restored_events(records: Mapping[bytes, bytes], event_ns: int) -> list[apb.AlertEvent]:
    """ACTIVE events for every alert in one partition's latest alert books (key -> AlertBook).

    The position record is not a book and is skipped, as are empty values (a tombstone: the
    book emptied). `event_ns` is the time of the restore: the event is emitted again now.
    """
    return [
        event
        for key, value in records.items()
        if key != COMMANDS_POSITION_KEY and value
        for event in active_events(apb.AlertBook.FromString(value).alerts, event_ns)
    ]


def active_events(alerts: Iterable[apb.Alert], event_ns: int) -> list[apb.AlertEvent]:
    """The ACTIVE event of each alert, as the processor emits it when it accepts the alert
    (services/processor/alert_codec.py event_to_proto: the alert echoed, status, time); an alert
    without a user or alert id could not be cached and is left out."""
    events = (apb.AlertEvent(alert=alert, status=ACTIVE, event_ns=event_ns) for alert in alerts)
    return [event for event in events if invalid_reason(event) is None]
