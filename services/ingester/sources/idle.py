"""No built-in source (`INGESTER_SOURCE=none`): the ingester takes only ticks pushed over gRPC."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from tapewire.ticks import RawTick


class IdleSource:
    """Yields nothing and ends when stopped, so the ingester runs until it is told to stop."""

    name = "none"

    def read(self, stop: threading.Event) -> Iterator[RawTick]:
        stop.wait()
        yield from ()
