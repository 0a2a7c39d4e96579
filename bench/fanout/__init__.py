"""Fan-out capacity: delivered updates/s per server core and latency, dashboard_api against peers.

    python -m bench.fanout --connections 100,1000 --repetitions 1 --seconds 10

For each contender and connection count, one trial:

1. the server starts on a free port with Redis names of its own: dashboard_api (through
   tools.suite.Suite, as `make run` starts it; alerts and gRPC off, so it needs no Kafka), the
   python-socketio peer (bench/peers/socketio_server.py: AsyncRedisManager, a room per
   instrument) or Centrifugo (bench/peers/centrifugo.py: Redis engine, HTTP publish API);
2. a publisher process gets ready: for dashboard_api it writes each state to Redis exactly as
   cache_updater does (services/cache_updater/apply.py's `prepare` and Lua script, in one
   pipeline per tick, history included, so versions go up by one and the relay sees real
   updates; every instrument is seeded at version 1 first); for the peers it sends the same
   state, as JSON (the JSON dashboard_api sends, of about the same size), through the peer's own
   publish path: a write-only AsyncRedisManager emit to the instrument's room, or Centrifugo's
   /api/batch;
3. N WebSocket connections are opened from a few client processes and each subscribes to
   `per_client` of `instruments` instruments, spread so that every instrument has the same
   number of watchers (when N * per_client is a multiple of instruments);
4. the publisher sends `offered_rate` states/s in all (round-robin over the instruments), each
   stamped with its publish wall time in ns (`times.cached_ns` of the state); after a warm-up,
   for `seconds`, the clients count the updates they receive and the latency receive time -
   publish time, while ProcessSampler reads the CPU seconds and peak RSS of the server, of each
   client process, of the publisher and of Redis.

The clients are a minimal WebSocket client on asyncio Protocols (uvloop): frames are parsed
from the byte stream and the publish stamp is read from the text without decoding the JSON, so
that a Python client costs a few microseconds per update. Each contender's client speaks its
real protocol: tapewire's protocol v1 (JSON encoding, `batch=true`: several updates may share a
frame, as several Centrifugo replies may), Socket.IO 5 over Engine.IO 4 (WebSocket
transport, no polling), Centrifugo's JSON protocol (several replies may share one frame,
newline-separated, and each counts). The three servers on one machine share its cores with
the clients, the publisher and Redis: the result says when the clients or the machine were
saturated, in which case the delivered rate is a floor, not the server's capacity.

Per trial: delivered updates/s (sum over clients, received in the window), the expected rate
(states published in the window x watchers), server CPU cores (CPU seconds / window), delivered
updates/s per server core, latency p50/p99/p99.9/max, peak RSS, client and publisher CPU.
`run()` gives medians over repetitions and, per connection count, the ratios dashboard_api /
socketio and dashboard_api / centrifugo of each repetition (contenders run back to back, in an
order that rotates per repetition), and their medians.

The modules: clients (the WebSocket clients, one per protocol), client_process (a process
holding a share of the connections), publisher (the publisher process), servers (starting each
contender), trial (one trial, and `run`), summary (one trial's figures, medians, ratios and
targets); `python -m bench.fanout` runs __main__.
"""

from bench.fanout.trial import run

__all__ = ["run"]
