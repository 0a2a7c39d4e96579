"""A live WebSocket client on a thread of its own: subscribed to every instrument (protobuf,
batched, as the dashboard reads), it keeps the end-to-end latency of each update it receives
(its ingest stamp to the moment it arrived) until the sampler takes them."""

from __future__ import annotations

import contextlib
import threading
import time

from websockets.sync.client import connect

from tapewire.v1 import stream_pb2

PING_EVERY_S = 30.0


class Viewer:
    def __init__(self, url: str, instruments: list[str]) -> None:
        self._url = f"{url}?encoding=protobuf&batch=true"
        self._instruments = instruments
        self._lock = threading.Lock()
        self._latencies_ms: list[float] = []
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="soak-viewer", daemon=True)

    def start(self) -> Viewer:
        self._thread.start()
        return self

    def take(self) -> list[float]:
        """The latencies received since the last call."""
        with self._lock:
            taken, self._latencies_ms = self._latencies_ms, []
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():  # reconnects: a dashboard_api restart is part of a soak
            try:
                self._read()
            except Exception as error:  # a refused handshake or a bad frame too: recorded, and retried
                self.errors.append(f"{time.strftime('%H:%M:%S')} {type(error).__name__}: {error}")
                self._stop.wait(1.0)

    def _read(self) -> None:
        subscribe = stream_pb2.ClientMessage()
        subscribe.subscribe.instruments.extend(self._instruments)
        ping = stream_pb2.ClientMessage(ping=stream_pb2.PingRequest()).SerializeToString()
        with connect(self._url, open_timeout=10, max_size=2**22) as ws:
            ws.send(subscribe.SerializeToString())
            message = stream_pb2.ServerMessage()
            pinged = time.monotonic()
            while not self._stop.is_set():
                # A client that only listens must still speak within the server's idle timeout
                # (docs/websocket.md: ping at least every idle_timeout_s / 2, 60 s by default).
                if time.monotonic() - pinged >= PING_EVERY_S:
                    ws.send(ping)
                    pinged = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    frame = ws.recv(1.0)
                    received_ns = time.time_ns()
                    message.ParseFromString(frame)  # type: ignore[arg-type]
                    kind = message.WhichOneof("kind")
                    states = (
                        [message.update.state]
                        if kind == "update"
                        else [u.state for u in message.updates.updates]
                        if kind == "updates"
                        else []
                    )
                    latencies = [(received_ns - s.times.ingest_ns) / 1e6 for s in states if s.times.ingest_ns]
                    with self._lock:
                        self._latencies_ms.extend(latencies)
