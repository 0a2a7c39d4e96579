import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { Feed, SOCKET_OPEN, type FeedSocket } from "./feed";
import type { InstrumentState } from "./types";

/** A socket that records what the feed sends and lets the test play the server. */
class FakeSocket implements FeedSocket {
  readyState = SOCKET_OPEN;
  sent: Record<string, unknown>[] = [];
  closedWith: { code?: number; reason?: string } | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data));
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  /** The server sends a frame (raw text, or an object to serialize). */
  receive(message: string | Record<string, unknown>): void {
    this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
  }

  /** The connection drops (the server closed it, or the network went). */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  subscribes(): Record<string, unknown>[] {
    return this.sent.filter((m) => m.type === "subscribe");
  }
}

function state(instrument: string, version: number, ingestNs = "0"): InstrumentState {
  return { instrument, version, last_price: "100", times: { ingest_ns: ingestNs } } as unknown as InstrumentState;
}

function update(instrument: string, version: number, ingestNs = "0") {
  return { type: "update", instrument, version, state: state(instrument, version, ingestNs) };
}

const WELCOME = { type: "welcome", protocol: 1, connection_id: "c", user_id: "u1", heartbeat_s: 5, idle_timeout_s: 30 };

function snapshot(partial: Record<string, unknown>) {
  return { type: "snapshot", reason: "subscribe", states: [], missing: [], resumed: {}, gaps: [], ...partial };
}

function setup(options: { initial?: InstrumentState[]; instruments?: string[]; random?: number; now?: () => number } = {}) {
  const sockets: FakeSocket[] = [];
  const feed = new Feed({
    url: "ws://api.test:8000/ws",
    token: "t0k",
    instruments: options.instruments ?? ["AAPL"],
    initial: options.initial ?? [state("AAPL", 4)],
    onAlert: () => undefined,
    onAlertList: () => undefined,
    createSocket: (url, protocols) => {
      const socket = new FakeSocket(url, protocols);
      sockets.push(socket);
      return socket;
    },
    random: () => options.random ?? 0.5,
    now: options.now,
  });
  const last = () => sockets[sockets.length - 1];
  return { feed, sockets, last };
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe("Feed: connecting", () => {
  it("opens the socket from the factory with the token, batching and the subprotocol", () => {
    const { feed, sockets } = setup();
    feed.start();
    expect(sockets).toHaveLength(1);
    const url = new URL(sockets[0].url);
    expect(url.searchParams.get("token")).toBe("t0k");
    expect(url.searchParams.get("batch")).toBe("true");
    expect(sockets[0].protocols).toEqual(["tapewire.v1.json"]);
    expect(feed.view().status).toBe("connecting");
    feed.stop();
  });

  it("subscribes after the welcome, resuming from the versions it was rendered with", () => {
    const { feed, last } = setup({ initial: [state("AAPL", 4), state("MSFT", 9)], instruments: ["AAPL", "MSFT", "NVDA"] });
    feed.start();
    last().receive(WELCOME);
    expect(last().subscribes()).toEqual([
      { type: "subscribe", id: expect.any(String), instruments: ["AAPL", "MSFT", "NVDA"], since: { AAPL: 4, MSFT: 9 } },
    ]);
    last().receive(snapshot({ resumed: { AAPL: { from: 5, to: 4 }, MSFT: { from: 10, to: 9 } }, missing: ["NVDA"] }));
    expect(feed.view().status).toBe("live");
    expect(feed.view().userId).toBe("u1");
    feed.stop();
  });
});

describe("Feed: reconnect with backoff", () => {
  it("waits an exponential, jittered delay between attempts and resets it once welcomed", () => {
    const { feed, sockets, last } = setup({ random: 0.5 });
    feed.start();
    last().drop(1006);
    expect(feed.view().status).toBe("reconnecting");
    // attempt 0: 250 + 0.5 × (500 − 250) = 375 ms
    vi.advanceTimersByTime(374);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    // attempt 1 (no welcome in between): 250 + 0.5 × (1000 − 250) = 625 ms
    last().drop(1011);
    vi.advanceTimersByTime(624);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(3);
    // attempt 2: 250 + 0.5 × (2000 − 250) = 1125 ms
    last().drop(1013);
    vi.advanceTimersByTime(1124);
    expect(sockets).toHaveLength(3);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(4);
    // A welcome resets the backoff: the next drop waits 375 ms again.
    last().receive(WELCOME);
    last().drop(1006);
    vi.advanceTimersByTime(375);
    expect(sockets).toHaveLength(5);
    feed.stop();
  });

  it("caps the delay at 10 s", () => {
    const { feed, sockets, last } = setup({ random: 0.999999 });
    feed.start();
    for (let i = 0; i < 8; i++) {
      last().drop(1006);
      vi.advanceTimersByTime(10_000);
    }
    expect(sockets).toHaveLength(9);
    feed.stop();
  });

  it("comes back at once after a 1012 drain, and not at all after a 4001", () => {
    const { feed, sockets, last } = setup();
    feed.start();
    last().drop(1012, "draining");
    vi.advanceTimersByTime(0);
    expect(sockets).toHaveLength(2);
    last().drop(4001, "expired");
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(2);
    expect(feed.view().status).toBe("unauthorized");
    feed.stop();
  });

  it("closes a silent server's socket (watchdog) and reconnects", () => {
    const { feed, sockets, last } = setup();
    feed.start();
    last().receive(WELCOME);
    // heartbeat_s 5: silent for more than 2 × 5 s + 5 s
    vi.advanceTimersByTime(16_000);
    expect(sockets[0].closedWith?.code).toBe(4000);
    feed.stop();
  });
});

describe("Feed: resume after a reconnect", () => {
  it("subscribes with `since` = the versions held, and counts what the server replays", () => {
    const { feed, sockets, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({ resumed: { AAPL: { from: 5, to: 4 } } }));
    last().receive(update("AAPL", 5));
    last().receive({ type: "updates", updates: [update("AAPL", 6)] });
    expect(feed.book.get("AAPL")?.version).toBe(6);

    last().drop(1001, "shutting down");
    vi.advanceTimersByTime(10_000);
    expect(sockets).toHaveLength(2);
    last().receive(WELCOME);
    expect(last().subscribes()[0].since).toEqual({ AAPL: 6 });
    last().receive(snapshot({ resumed: { AAPL: { from: 7, to: 9 } } }));
    for (const v of [7, 8, 9]) last().receive(update("AAPL", v));

    const view = feed.view();
    expect(feed.book.get("AAPL")?.version).toBe(9);
    expect(view.status).toBe("live");
    expect(view.notice).toBe("reconnected: resumed 3 missed updates, no gaps");
    expect(view.resumed).toBe(3);
    expect(view.reconnects).toBe(1);
    expect(view.gaps).toBe(0);
    feed.stop();
  });

  it("says when the history did not reach back (fresh state instead)", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    last().drop(1006);
    vi.advanceTimersByTime(10_000);
    last().receive(WELCOME);
    last().receive(snapshot({ states: [state("AAPL", 40)], gaps: ["AAPL"] }));
    expect(feed.book.get("AAPL")?.version).toBe(40);
    expect(feed.view().historyGaps).toBe(1);
    expect(feed.view().gaps).toBe(0);
    feed.stop();
  });
});

describe("Feed: version gaps", () => {
  it("holds its state and resumes the instrument from the version it holds", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({ resumed: { AAPL: { from: 5, to: 4 } } }));
    last().receive(update("AAPL", 5));
    last().sent = [];

    last().receive(update("AAPL", 8)); // 6 and 7 went missing, unannounced
    expect(feed.view().gaps).toBe(2);
    expect(feed.view().status).toBe("resyncing");
    expect(feed.book.get("AAPL")?.version).toBe(5);
    expect(last().subscribes()).toEqual([{ type: "subscribe", id: expect.any(String), instruments: ["AAPL"], since: { AAPL: 5 } }]);

    // Until the snapshot answers, later updates wait for the replay (and are no new gaps).
    last().receive(update("AAPL", 9));
    expect(feed.book.get("AAPL")?.version).toBe(5);
    expect(feed.view().gaps).toBe(2);

    const id = last().subscribes()[0].id;
    last().receive(snapshot({ id, resumed: { AAPL: { from: 6, to: 9 } } }));
    for (const v of [6, 7, 8, 9]) last().receive(update("AAPL", v));
    expect(feed.book.get("AAPL")?.version).toBe(9);
    expect(feed.view().status).toBe("live");
    expect(feed.view().notice).toBe("resynced AAPL after a version gap");
    expect(feed.view().gaps).toBe(2);
    feed.stop();
  });

  it("takes the fresh state when the history no longer reaches back", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    last().receive(update("AAPL", 7));
    last().receive(snapshot({ states: [state("AAPL", 12)], gaps: ["AAPL"] }));
    last().receive(update("AAPL", 13));
    expect(feed.book.get("AAPL")?.version).toBe(13);
    expect(feed.view().status).toBe("live");
    feed.stop();
  });

  it("accepts a jump the server announced (conflated) without resyncing", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    last().sent = [];
    last().receive({ type: "conflated", dropped: 10, instruments: ["AAPL"] });
    expect(feed.view().status).toBe("resyncing");
    last().receive(update("AAPL", 15));
    expect(feed.book.get("AAPL")?.version).toBe(15);
    expect(feed.view().status).toBe("live");
    expect(feed.view().gaps).toBe(0);
    expect(last().subscribes()).toEqual([]);
    feed.stop();
  });

  it("takes the next update when the server refuses the resync", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    last().sent = [];
    last().receive(update("AAPL", 7));
    const id = last().subscribes()[0].id;
    last().receive({ type: "error", id, code: "rate_limited", reason: "slow down" });
    expect(feed.view().status).toBe("live");
    last().receive(update("AAPL", 9));
    expect(feed.book.get("AAPL")?.version).toBe(9);
    expect(feed.view().gaps).toBe(2);
    feed.stop();
  });

  it("forgets a pending resync when the connection drops (the reconnect resumes everything)", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    last().receive(update("AAPL", 9));
    last().drop(1006);
    vi.advanceTimersByTime(10_000);
    last().receive(WELCOME);
    expect(last().subscribes()[0].since).toEqual({ AAPL: 4 });
    last().receive(snapshot({ resumed: { AAPL: { from: 5, to: 5 } } }));
    last().receive(update("AAPL", 5));
    expect(feed.book.get("AAPL")?.version).toBe(5);
    feed.stop();
  });
});

describe("Feed: timers", () => {
  it("leaves no timer behind when stopped, whatever it was doing", async () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME); // ping and watchdog intervals
    const reply = feed.createAlert("AAPL", "above", "101"); // a request timeout
    expect(vi.getTimerCount()).toBe(3);
    feed.stop();
    expect(vi.getTimerCount()).toBe(0);
    await expect(reply).resolves.toEqual({ ok: false, error: "disconnected: page closed" });
    expect(last().closedWith).toEqual({ code: 1000, reason: "page closed" });
  });

  it("clears the retry timer when stopped while reconnecting", () => {
    const { feed, sockets, last } = setup();
    feed.start();
    last().drop(1006);
    expect(vi.getTimerCount()).toBe(1);
    feed.stop();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
  });

  it("does not stack liveness timers on a second welcome", () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    last().receive(WELCOME);
    expect(vi.getTimerCount()).toBe(2);
    feed.stop();
  });

  it("clears a request's timer when its reply comes", async () => {
    const { feed, last } = setup();
    feed.start();
    last().receive(WELCOME);
    const reply = feed.createAlert("AAPL", "above", "101");
    const id = last().sent.find((m) => m.type === "alert.create")?.id;
    last().receive({ type: "alert.accepted", id, alert_id: "a1" });
    await expect(reply).resolves.toEqual({ ok: true, alertId: "a1" });
    expect(vi.getTimerCount()).toBe(2);
    feed.stop();
  });
});

describe("Feed: latency from nanosecond stamps", () => {
  it("measures ingest → now exactly, though the stamp is beyond a double's integers", () => {
    const { feed, last } = setup({ now: () => 1_763_800_000_124 });
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({}));
    // A raw frame: the stamp as the server writes it, a JSON integer of 19 digits.
    last().receive(
      '{"type":"update","instrument":"AAPL","version":5,"state":{"instrument":"AAPL","version":5,"times":{"ingest_ns":1763800000123456789}}}',
    );
    expect(feed.book.get("AAPL")?.times.ingest_ns).toBe("1763800000123456789");
    expect(feed.view().p50Ms).toBeCloseTo(0.543211, 9);
    feed.stop();
  });

  it("leaves replayed updates out of the latency figures", () => {
    const { feed, last } = setup({ now: () => 1_763_800_000_124 });
    feed.start();
    last().receive(WELCOME);
    last().receive(snapshot({ resumed: { AAPL: { from: 5, to: 5 } } }));
    last().receive(update("AAPL", 5, "1763800000000000000"));
    expect(feed.view().p50Ms).toBeNull();
    last().receive(update("AAPL", 6, "1763800000123000000"));
    expect(feed.view().p50Ms).toBeCloseTo(1, 9);
    feed.stop();
  });
});
