"""The load: ticks at a fixed offered rate straight into the raw topic, in a process of its own.

It stands in for the feed and the ingester: each tick is stamped `ingest_time_ns` as it is
handed to the producer, so end-to-end latency starts where the ingester's would. Prices are a
random walk per instrument on a cent grid (quotes and trades, like the simulator's), built
ahead in a pool so that the paced loop only sets the sequence and the stamps and serializes.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from confluent_kafka import Producer

from tapewire.kafka import producer_config
from tapewire.settings import KafkaSettings
from tapewire.v1 import market_pb2 as pb

POOL_PER_INSTRUMENT = 512
# Pacing granularity: each step sends what the clock says is due (bursts of rate/500 at most);
# finer steps cost the generator CPU that the suite on the same two cores would miss.
STEP_S = 0.002


def instrument_names(count: int) -> list[str]:
    return [f"B{n:03d}" for n in range(count)]


def _pool(name: str, rng: random.Random, trade_ratio: float) -> list[pb.Tick]:
    mid_cents = rng.randint(2_000, 90_000)
    ticks = []
    for _ in range(POOL_PER_INSTRUMENT):
        mid_cents = max(200, mid_cents + rng.choice((-2, -1, 0, 1, 2)))
        bid, ask = mid_cents - 1, mid_cents + 1
        if rng.random() < trade_ratio:
            price = bid if rng.random() < 0.5 else ask
            tick = pb.Tick(
                instrument=name,
                venue="BENCH",
                kind=pb.TICK_KIND_TRADE,
                price=f"{price / 100:.2f}",
                size=str(rng.choice((100, 200, 300, 500))),
            )
        else:
            tick = pb.Tick(
                instrument=name,
                venue="BENCH",
                kind=pb.TICK_KIND_QUOTE,
                bid_price=f"{bid / 100:.2f}",
                bid_size="300",
                ask_price=f"{ask / 100:.2f}",
                ask_size="400",
            )
        ticks.append(tick)
    return ticks


@dataclass(frozen=True)
class LoadSpec:
    bootstrap: str
    topic: str
    rate: float
    seconds: float
    instruments: int = 100
    trade_ratio: float = 0.3
    seed: int = 20261122


def _produce(spec: LoadSpec, results: Connection) -> None:
    rng = random.Random(spec.seed)
    names = instrument_names(spec.instruments)
    pools = {name: _pool(name, rng, spec.trade_ratio) for name in names}
    sequence = dict.fromkeys(names, 0)
    kafka = KafkaSettings(bootstrap_servers=spec.bootstrap)
    # The ingester's own producer settings: what it adds to latency is part of the measurement.
    producer = Producer(producer_config(kafka, "bench-loadgen"))
    failed = 0

    def on_delivery(error: object, _message: object) -> None:
        nonlocal failed
        if error is not None:
            failed += 1

    total = int(spec.rate * spec.seconds)
    sent = 0
    start = time.monotonic()
    started_at = time.time()
    while sent < total:
        due = min(total, int((time.monotonic() - start) * spec.rate) + 1)
        while sent < due:
            name = names[sent % len(names)]
            sequence[name] += 1
            tick = pools[name][sequence[name] % POOL_PER_INSTRUMENT]
            tick.sequence = sequence[name]
            now = time.time_ns()
            tick.exchange_time_ns = now
            tick.ingest_time_ns = now
            try:
                producer.produce(spec.topic, tick.SerializeToString(), name.encode(), on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(STEP_S)
    elapsed = time.monotonic() - start
    producer.flush(60)
    results.send(
        {
            "offered_rate": spec.rate,
            "sent": sent,
            "failed": failed,
            "seconds": elapsed,
            # Wall-clock bounds of the load, to pick the updates ingested within it.
            "started_at": started_at,
            "ended_at": started_at + elapsed,
            "achieved_rate": sent / elapsed if elapsed else 0.0,
        }
    )


class LoadGen:
    """One producing process: start(), then result() once it is done."""

    def __init__(self, spec: LoadSpec) -> None:
        context = mp.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self.process = context.Process(target=_produce, args=(spec, send), name="bench-loadgen", daemon=True)

    def start(self) -> LoadGen:
        self.process.start()
        return self

    def result(self, timeout_s: float) -> dict[str, float]:
        if not self._receive.poll(timeout_s):
            self.process.kill()
            raise TimeoutError("the load generator did not finish")
        found: dict[str, float] = self._receive.recv()
        self.process.join(5)
        return found
