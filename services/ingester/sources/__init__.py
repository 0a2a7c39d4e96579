"""Where ticks come from: the interface every source implements.

A source yields validated domain ticks (`tapewire.ticks.Trade | Quote`) from `read(stop)` until
it runs out or `stop` is set. Input it cannot turn into a tick is never raised: the source hands
an `InvalidRecord` to the `on_invalid` callback it was built with and carries on, so one bad
line in a feed costs one tick, not the ingester.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from tapewire.ticks import RawTick


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """One piece of input a source skipped: where it was, a short reason (a metric label) and the detail."""

    source: str
    position: int  # the line number for line-based sources, else the record count
    reason: str
    detail: str


InvalidRecordHandler = Callable[[InvalidRecord], None]


class TickSource(Protocol):
    """Anything that produces ticks for the ingester."""

    @property
    def name(self) -> str:
        """A short label for logs and metrics ("simulator", "replay")."""
        ...

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        """Yield ticks until the input ends or `stop` is set; invalid input goes to `on_invalid`."""
        ...
