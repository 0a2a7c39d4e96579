"""cache_updater's Lua scripts, queued on pipelines as EVALSHA and loaded when Redis lacks them.

redis-py's own `Script` on a plain pipeline asks SCRIPT EXISTS before every execute, a round
trip per batch on the live path, and on a cluster pipeline it sends EVALSHA and leaves a
NOSCRIPT to the caller. Here every pipeline sends EVALSHA only; the caller loads the scripts
when Redis answers NOSCRIPT (a new or restarted server, a replica promoted by a failover: the
script cache is not replicated) and runs the batch again, which the scripts make safe (a state
applied twice is stale the second time, an alert event moves only forward).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.client import Pipeline
from redis.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from tapewire.redis_client import UNAVAILABLE, SyncClient

AnyPipeline = Pipeline | ClusterPipeline
# Redis cannot take the batch now: unavailable, or NOSCRIPT again after loading (another
# failover in between). The batch is retried later, as a whole.
RETRY_LATER: tuple[type[Exception], ...] = (*UNAVAILABLE, NoScriptError)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def queue(self, pipe: AnyPipeline, keys: Sequence[str], args: Iterable[bytes | str | int]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


def load(client: SyncClient, scripts: Iterable[Script]) -> None:
    """SCRIPT LOAD each script (on a cluster, redis-py sends it to every master)."""
    for script in scripts:
        client.script_load(script.source)


def run_pipeline(
    client: SyncClient, scripts: Sequence[Script], fill: Callable[[AnyPipeline], T]
) -> tuple[T, list[Any]]:
    """Execute a pipeline that `fill` queues (returning what `fill` returned, and the replies);
    on NOSCRIPT, load `scripts` and execute it all again (see the module doc)."""
    pipe = client.pipeline(transaction=False)
    filled = fill(pipe)
    try:
        return filled, pipe.execute()
    except NoScriptError:
        load(client, scripts)
    pipe = client.pipeline(transaction=False)
    filled = fill(pipe)
    return filled, pipe.execute()
