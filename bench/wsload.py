"""WebSocket clients of dashboard_api for the benchmark, spread over a few processes.

Each client subscribes to `per_client` instruments (client c takes c*per_client … mod the
instrument count, so every instrument has the same number of watchers) in protobuf encoding
(the cheapest for the client to read), and records for every update: receive time minus the
ingest stamp (end to end) and the share of each hop from the stage stamps. A client can also
be `silent`: it subscribes and then never reads (the server must keep its memory bounded).

With `max_rate` the subscription is throttled (conflated: at most that many updates/s per
instrument, the newest state winning in between), as a desk screen subscribes. End to end is
then the age of the newest state the client holds at the moment it receives it; the client
keeps that state until the next receipt while newer ones exist upstream, so it also records,
per instrument, the interval between receipts and the age the held state had reached when the
next one replaced it (the peak of the sawtooth).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import socket
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

import websockets

from tapewire.v1 import market_pb2, stream_pb2

from .fdlimit import raise_fd_limit

HOPS = ("ingest_to_processed", "processed_to_cached", "cached_to_sent", "sent_to_received")


@dataclass(frozen=True)
class ClientSpec:
    url: str
    clients: int
    instruments: list[str]
    per_client: int
    seconds: float
    processes: int = 2
    silent: bool = False
    # Updates/s per instrument at most (the subscribe's `max_rate`); 0: every update.
    max_rate: float = 0.0


@dataclass
class Recorded:
    # Per update: its ingest stamp (to keep only those of the measured window), then latencies.
    ingest_s: array = field(default_factory=lambda: array("d"))
    e2e_ms: array = field(default_factory=lambda: array("f"))
    hops_ms: dict[str, array] = field(default_factory=lambda: {hop: array("f") for hop in HOPS})
    # Per update too, NaN for an instrument's first: the time since the previous receipt of the
    # same instrument, and the age the state received then had reached by now.
    gap_ms: array[float] = field(default_factory=lambda: array("f"))
    replaced_age_ms: array[float] = field(default_factory=lambda: array("f"))
    updates: int = 0
    connected: int = 0
    errors: list[str] = field(default_factory=list)


def _subscription(index: int, spec: ClientSpec) -> list[str]:
    count = len(spec.instruments)
    return [spec.instruments[(index * spec.per_client + j) % count] for j in range(spec.per_client)]


# A client that never reads should push back on the server within seconds, as a stalled phone
# would, not after the kernel has buffered megabytes for it on loopback.
SILENT_RECEIVE_BUFFER = 8192


async def _small_window_socket(url: str) -> socket.socket:
    """A socket connected to `url`'s host and port with a small receive buffer (set before
    connecting, so that the TCP window it advertises stays small)."""
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SILENT_RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname or "127.0.0.1", parts.port or 80))
    return sock


async def _client(index: int, spec: ClientSpec, record: Recorded, until: float) -> None:
    subscribe = stream_pb2.ClientMessage()
    subscribe.subscribe.instruments.extend(_subscription(index, spec))
    subscribe.subscribe.max_rate = spec.max_rate
    held: dict[str, tuple[int, int]] = {}
    try:
        async with websockets.connect(
            # Batches when updates queue up, as the dashboard asks for them.
            f"{spec.url}?encoding=protobuf&batch=true",
            max_size=2**22,
            max_queue=4 if spec.silent else 1024,
            open_timeout=30,
            ping_interval=None,
            **({"sock": await _small_window_socket(spec.url)} if spec.silent else {}),
        ) as ws:
            await ws.send(subscribe.SerializeToString())
            record.connected += 1
            if spec.silent:
                await asyncio.sleep(max(0.0, until - time.monotonic()))
                return
            message = stream_pb2.ServerMessage()
            while (left := until - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        frame = await ws.recv()
                except TimeoutError:
                    return
                received_ns = time.time_ns()
                message.ParseFromString(frame)  # type: ignore[arg-type]
                kind = message.WhichOneof("kind")
                if kind == "update":
                    _record(record, message.update.state, received_ns, held)
                elif kind == "updates":
                    for update in message.updates.updates:
                        _record(record, update.state, received_ns, held)
    except (OSError, websockets.WebSocketException) as error:
        if len(record.errors) < 5:
            record.errors.append(f"{type(error).__name__}: {error}")


def _record(
    record: Recorded, state: market_pb2.InstrumentState, received_ns: int, held: dict[str, tuple[int, int]]
) -> None:
    """One update received: its latencies, and against `held` (instrument → receive time and
    ingest stamp of the state this client held until now) the receipt gap and replaced age."""
    times = state.times
    record.updates += 1
    record.ingest_s.append(times.ingest_ns / 1e9)
    record.e2e_ms.append((received_ns - times.ingest_ns) / 1e6)
    hops = record.hops_ms
    hops["ingest_to_processed"].append((times.processed_ns - times.ingest_ns) / 1e6)
    hops["processed_to_cached"].append((times.cached_ns - times.processed_ns) / 1e6)
    hops["cached_to_sent"].append((times.sent_ns - times.cached_ns) / 1e6)
    hops["sent_to_received"].append((received_ns - times.sent_ns) / 1e6)
    previous = held.get(state.instrument)
    record.gap_ms.append(math.nan if previous is None else (received_ns - previous[0]) / 1e6)
    record.replaced_age_ms.append(math.nan if previous is None else (received_ns - previous[1]) / 1e6)
    held[state.instrument] = (received_ns, times.ingest_ns)


def _run_clients(spec: ClientSpec, indexes: list[int], start_at: float, results: Connection) -> None:
    raise_fd_limit()
    record = Recorded()
    # monotonic clocks are system-wide on Linux: every process counts from the same instant.
    until = start_at + spec.seconds

    async def main() -> None:
        await asyncio.gather(*(_client(i, spec, record, until) for i in indexes))

    cpu_before = time.process_time()
    asyncio.run(main())
    results.send(
        {
            "ingest_s": record.ingest_s.tobytes(),
            "e2e_ms": record.e2e_ms.tobytes(),
            "hops_ms": {hop: values.tobytes() for hop, values in record.hops_ms.items()},
            "gap_ms": record.gap_ms.tobytes(),
            "replaced_age_ms": record.replaced_age_ms.tobytes(),
            "updates": record.updates,
            "connected": record.connected,
            "errors": record.errors,
            "cpu_s": time.process_time() - cpu_before,
        }
    )


class ClientFleet:
    """`spec.clients` clients over `spec.processes` processes, for `spec.seconds` from start()."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self._context = mp.get_context("spawn")
        self._pipes: list[Connection] = []
        self.processes: list[mp.process.BaseProcess] = []

    def start(self) -> ClientFleet:
        start_at = time.monotonic() + 0.5
        groups = [list(range(p, self.spec.clients, self.spec.processes)) for p in range(self.spec.processes)]
        for group in groups:
            receive, send = self._context.Pipe(duplex=False)
            process = self._context.Process(
                target=_run_clients, args=(self.spec, group, start_at, send), daemon=True
            )
            process.start()
            self._pipes.append(receive)
            self.processes.append(process)
        return self

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def collect(self, timeout_s: float, window: tuple[float, float] | None = None) -> dict[str, object]:
        """What the clients recorded, merged; with `window` (epoch seconds), only the updates
        ingested within it, so that warm-up and the tail after the load are left out."""
        series = ("e2e_ms", "gap_ms", "replaced_age_ms")
        merged = {name: array("f") for name in series}
        hops = {hop: array("f") for hop in HOPS}
        updates = connected = 0
        cpu_s = 0.0
        errors: list[str] = []
        deadline = time.monotonic() + timeout_s
        for pipe, process in zip(self._pipes, self.processes, strict=True):
            if not pipe.poll(max(0.1, deadline - time.monotonic())):
                process.kill()
                errors.append("a client process did not report")
                continue
            part = pipe.recv()
            ingest = array("d")
            ingest.frombytes(part["ingest_s"])
            keep = [i for i, t in enumerate(ingest) if window is None or window[0] <= t < window[1]]
            for name in series:
                merged[name].extend(_kept(part[name], keep))
            for hop in HOPS:
                hops[hop].extend(_kept(part["hops_ms"][hop], keep))
            updates += len(keep)
            connected += part["connected"]
            cpu_s += part["cpu_s"]
            errors.extend(part["errors"])
            process.join(5)
        return {
            **merged,
            "hops_ms": hops,
            "updates": updates,
            "connected": connected,
            "cpu_s": cpu_s,
            "errors": errors,
        }


def _kept(recorded: bytes, keep: list[int]) -> array[float]:
    """The values at `keep` of a recorded float series, leaving out NaN (nothing to measure)."""
    values = array("f")
    values.frombytes(recorded)
    return array("f", (value for i in keep if not math.isnan(value := values[i])))
