// The live connection: protocol v1 over a browser WebSocket. It keeps the Book current,
// reconnects with backoff and resumes from the versions the Book holds, answers the server's
// liveness rules, and carries alert commands. The page reads it through `view()`.
// The socket comes from a factory (a browser WebSocket by default), and the clock and the
// jitter can be passed in too, so the whole client runs in unit tests without a network.

import { Book } from "./book";
import { hasStamp, msSince, parseJson } from "./nanos";
import { LatencyWindow, RateMeter, backoffMs } from "./stats";
import type { AlertDirection, AlertEvent, InstrumentState, ServerMessage, Snapshot } from "./types";

/** What the feed uses of a WebSocket: a browser `WebSocket` is one, a test's fake is another. */
export interface FeedSocket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type SocketFactory = (url: string, protocols: string[]) => FeedSocket;

/** WebSocket.OPEN, without needing the WebSocket global (absent from Node's test runs). */
export const SOCKET_OPEN = 1;

// A WebSocket has all of FeedSocket; only its handlers' event types are wider than ours.
const browserSocket: SocketFactory = (url, protocols) => new WebSocket(url, protocols) as unknown as FeedSocket;

export type ConnectionStatus = "connecting" | "live" | "reconnecting" | "resyncing" | "unauthorized";

export interface FeedView {
  status: ConnectionStatus;
  /** What happened last worth telling the user (a resume, a resync, why we are reconnecting). */
  notice: string;
  updatesPerSecond: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Versions lost without the server saying so: must stay 0. */
  gaps: number;
  /** Versions replayed from history after reconnects. */
  resumed: number;
  /** Instruments whose history did not reach back on a resume (the server sent fresh states). */
  historyGaps: number;
  reconnects: number;
  userId: string;
}

export interface AlertReply {
  ok: boolean;
  alertId?: string;
  error?: string;
}

interface FeedOptions {
  url: string;
  token: string | null;
  instruments: string[];
  initial: InstrumentState[];
  onAlert: (event: AlertEvent) => void;
  onAlertList: (events: Omit<AlertEvent, "type">[]) => void;
  /** Opens the connection; a browser WebSocket by default. */
  createSocket?: SocketFactory;
  /** The jitter of the reconnect backoff, in [0, 1); Math.random by default. */
  random?: () => number;
  /** Wall-clock epoch milliseconds with sub-millisecond precision; from `performance` by default. */
  now?: () => number;
}

interface PendingRequest {
  resolve: (message: ServerMessage) => void;
  timer: ReturnType<typeof setTimeout> | null;
}

const REQUEST_TIMEOUT_MS = 10_000;

/** Wall-clock now in milliseconds with sub-millisecond precision, as the stamps are epoch based. */
function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export class Feed {
  readonly book: Book;
  private socket: FeedSocket | null = null;
  private instruments: string[];
  /** The same, for the per-update membership test. */
  private watched: Set<string>;
  private status: ConnectionStatus = "connecting";
  private notice = "connecting…";
  private userId = "";
  private attempt = 0;
  private reconnects = 0;
  private historyGaps = 0;
  private everConnected = false;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private lastHeardMs = 0;
  private silenceLimitMs = 45_000;
  private nextId = 0;
  private readonly pending = new Map<string, PendingRequest>();
  private readonly latency = new LatencyWindow();
  private readonly rate = new RateMeter();
  private readonly listeners = new Set<() => void>();
  private readonly changed = new Set<string>();
  /** instrument → the last version being replayed from history: those are not live, so they
   * count as resumed but not in the latency figures. */
  private readonly replayingUntil = new Map<string, number>();
  /** Instruments re-subscribed after a version gap, waiting for their snapshot: their updates
   * until then are dropped (the resume replays them in order). */
  private readonly resyncing = new Set<string>();
  /** The ids of those resubscriptions → their instrument (an error reply releases it). */
  private readonly resyncIds = new Map<string, string>();
  private readonly createSocket: SocketFactory;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(private readonly options: FeedOptions) {
    this.book = new Book(options.initial);
    this.instruments = [...options.instruments];
    this.watched = new Set(this.instruments);
    this.createSocket = options.createSocket ?? browserSocket;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? epochMs;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    this.failPending("page closed");
    socket?.close(1000, "page closed");
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Instruments changed since the last call (for the grid's flash), then forgotten. */
  takeChanged(): Set<string> {
    const taken = new Set(this.changed);
    this.changed.clear();
    return taken;
  }

  view(): FeedView {
    const now = this.now();
    const [p50Ms, p99Ms] = this.latency.quantiles([0.5, 0.99]);
    return {
      status: this.status,
      notice: this.notice,
      updatesPerSecond: this.rate.perSecond(now),
      p50Ms,
      p99Ms,
      gaps: this.book.gaps,
      resumed: this.book.resumed,
      historyGaps: this.historyGaps,
      reconnects: this.reconnects,
      userId: this.userId,
    };
  }

  /** Watch a different set: subscribe what is new (resuming what we hold), drop the rest. */
  setInstruments(next: string[]): void {
    const added = next.filter((name) => !this.instruments.includes(name));
    const removed = this.instruments.filter((name) => !next.includes(name));
    this.instruments = [...next];
    this.watched = new Set(next);
    for (const name of removed) {
      this.book.forget(name);
      this.resyncing.delete(name);
    }
    if (this.socket?.readyState !== SOCKET_OPEN) return;
    if (removed.length) this.send({ type: "unsubscribe", id: this.id(), instruments: removed });
    if (added.length) this.send({ type: "subscribe", id: this.id(), instruments: added, since: this.book.since(added) });
    this.emit();
  }

  createAlert(instrument: string, direction: AlertDirection, price: string): Promise<AlertReply> {
    return this.request({ type: "alert.create", instrument, direction, price });
  }

  cancelAlert(alertId: string): Promise<AlertReply> {
    return this.request({ type: "alert.cancel", alert_id: alertId });
  }

  private request(message: Record<string, unknown>): Promise<AlertReply> {
    if (this.socket?.readyState !== SOCKET_OPEN) {
      return Promise.resolve({ ok: false, error: "not connected: try again when live" });
    }
    const id = this.id();
    return new Promise((resolve) => {
      const entry: PendingRequest = {
        timer: setTimeout(() => {
          this.pending.delete(id);
          resolve({ ok: false, error: "no reply from the server" });
        }, REQUEST_TIMEOUT_MS),
        resolve: (reply) => {
          if (reply.type === "error") resolve({ ok: false, error: `${reply.code}: ${reply.reason}` });
          else if (reply.type === "alert.accepted") resolve({ ok: true, alertId: reply.alert_id });
          else resolve({ ok: true });
        },
      };
      this.pending.set(id, entry);
      this.send({ ...message, id });
    });
  }

  /** Settle a pending request (its timer cleared) with `message`. */
  private settle(id: string, message: ServerMessage): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    entry.resolve(message);
  }

  /** Every request still waiting fails now (connection lost or page closed); timers cleared. */
  private failPending(reason: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id, { type: "error", code: "disconnected", reason });
  }

  private connect(): void {
    if (this.stopped) return;
    const url = new URL(this.options.url);
    if (this.options.token) url.searchParams.set("token", this.options.token);
    // Several updates per frame when they queue up (docs/websocket.md): fewer frames to parse.
    url.searchParams.set("batch", "true");
    const socket = this.createSocket(url.toString(), ["tapewire.v1.json"]);
    this.socket = socket;
    socket.onmessage = (event) => this.onFrame(event.data);
    socket.onclose = (event) => this.onClose(socket, event.code, event.reason);
    // An error is always followed by a close, where we decide what to do.
    socket.onerror = () => undefined;
  }

  private onClose(socket: FeedSocket, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    this.clearTimers();
    this.failPending("connection lost");
    // The reconnect resumes every instrument from what the book holds.
    this.resyncing.clear();
    this.resyncIds.clear();
    if (this.stopped) return;
    if (code === 4001) {
      this.setStatus("unauthorized", `the server refused the token (${reason || "4001"}): log in again`);
      return;
    }
    // 1012 (instance draining) means "come back at once"; anything else backs off.
    const delay = code === 1012 ? 0 : backoffMs(this.attempt, this.random());
    this.attempt += 1;
    this.setStatus("reconnecting", `connection lost (${code}${reason ? ` ${reason}` : ""}); retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private onFrame(data: unknown): void {
    if (typeof data !== "string") return;
    this.lastHeardMs = Date.now();
    let message: ServerMessage;
    try {
      // Nanosecond stamps stay exact (lib/nanos.ts): they are beyond a double's integers.
      message = parseJson(data) as ServerMessage;
    } catch {
      return;
    }
    switch (message.type) {
      case "welcome":
        this.onWelcome(message.user_id, message.heartbeat_s, message.idle_timeout_s);
        return;
      case "snapshot":
        this.onSnapshot(message);
        return;
      case "update":
        this.onUpdate(message.state);
        return;
      case "updates":
        for (const update of message.updates) this.onUpdate(update.state);
        return;
      case "conflated":
        this.book.markConflated(message.instruments);
        this.setStatus("resyncing", `the page fell behind: ${message.dropped} updates skipped, catching up`);
        return;
      case "alert":
        this.options.onAlert(message);
        return;
      case "alert.list":
        this.options.onAlertList(message.alerts);
        return;
      default:
        break;
    }
    if (message.type === "error" && message.id && this.resyncIds.has(message.id)) this.onResyncRefused(message.id);
    if ("id" in message && message.id) this.settle(message.id, message);
  }

  private onWelcome(userId: string, heartbeatS: number, idleTimeoutS: number): void {
    this.userId = userId;
    this.attempt = 0;
    if (this.everConnected) this.reconnects += 1;
    // A second welcome on one connection must not leave the first one's timers running.
    this.clearTimers();
    // The server closes a client that says nothing for idle_timeout_s; a dead server is one
    // that sends nothing (not even a heartbeat) for well over heartbeat_s.
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), (idleTimeoutS * 1000) / 3);
    this.silenceLimitMs = heartbeatS * 2000 + 5000;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeardMs > this.silenceLimitMs) this.socket?.close(4000, "server silent");
    }, 1000);
    if (this.instruments.length) {
      this.send({ type: "subscribe", id: this.id(), instruments: this.instruments, since: this.book.since(this.instruments) });
    } else {
      this.setStatus("live", "live");
    }
    this.send({ type: "alert.list", id: this.id() });
  }

  private onSnapshot(snapshot: Snapshot): void {
    if (snapshot.id) {
      this.settle(snapshot.id, snapshot);
      this.resyncIds.delete(snapshot.id);
    }
    const resynced = [
      ...snapshot.states.map((s) => s.instrument),
      ...Object.keys(snapshot.resumed),
      ...snapshot.missing,
      ...Object.keys(snapshot.ahead ?? {}),
    ].filter((name) => this.resyncing.delete(name));
    const replayed = Object.values(snapshot.resumed).reduce((n, r) => n + Math.max(0, r.to - r.from + 1), 0);
    this.book.applySnapshot(snapshot);
    for (const [name, range] of Object.entries(snapshot.resumed)) this.replayingUntil.set(name, range.to);
    this.historyGaps += snapshot.gaps.length;
    for (const state of snapshot.states) this.changed.add(state.instrument);
    let notice = "live";
    if (snapshot.reason === "resync") notice = "resynced with the server";
    else if (resynced.length) notice = `resynced ${resynced.join(", ")} after a version gap`;
    else if (this.everConnected && Object.keys(snapshot.resumed).length) {
      notice =
        `reconnected: resumed ${replayed} missed updates` +
        (snapshot.gaps.length ? `, ${snapshot.gaps.length} fresh (history too short)` : ", no gaps");
    }
    this.everConnected = true;
    if (this.resyncing.size) this.setStatus("resyncing", this.notice);
    else this.setStatus("live", notice);
  }

  private onUpdate(state: InstrumentState): void {
    if (!this.watched.has(state.instrument)) return;
    // Waiting for the resume asked after a gap: it replays this version in its turn.
    if (this.resyncing.has(state.instrument)) return;
    const kind = this.book.classify(state);
    if (kind === "stale") return;
    if (kind === "gap") {
      this.onGap(state);
      return;
    }
    this.book.applyUpdate(state);
    const now = this.now();
    const replayed = (this.replayingUntil.get(state.instrument) ?? 0) >= state.version;
    if (!replayed && hasStamp(state.times?.ingest_ns)) this.latency.add(msSince(state.times.ingest_ns, now));
    this.rate.add(now);
    this.changed.add(state.instrument);
    if (this.status === "resyncing") this.setStatus("live", "caught up");
    else this.emit();
  }

  /** Versions went missing without notice (docs/websocket.md promises they never do): count
   * them, keep the state held, and resubscribe the instrument with `since` = the version held,
   * so the server replays what was missed in order (or, when its history does not reach back,
   * sends the current state: `snapshot.gaps`). Until that snapshot, its updates are dropped. */
  private onGap(state: InstrumentState): void {
    const name = state.instrument;
    const held = this.book.get(name)?.version ?? 0;
    this.book.recordGap(state);
    this.resyncing.add(name);
    const id = this.id();
    this.resyncIds.set(id, name);
    this.send({ type: "subscribe", id, instruments: [name], since: { [name]: held } });
    this.setStatus("resyncing", `version gap on ${name} (${held} → ${state.version}): resyncing`);
  }

  /** The server refused the resubscription (rate limit, say): stop waiting for its replay and
   * take the next update as it comes, as after an announced jump. */
  private onResyncRefused(id: string): void {
    const name = this.resyncIds.get(id)!;
    this.resyncIds.delete(id);
    if (!this.resyncing.delete(name)) return;
    this.book.markConflated([name]);
    if (this.resyncing.size === 0) this.setStatus("live", `could not resync ${name}: taking its next update`);
  }

  private setStatus(status: ConnectionStatus, notice: string): void {
    this.status = status;
    this.notice = notice;
    this.emit();
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket?.readyState === SOCKET_OPEN) this.socket.send(JSON.stringify(message));
  }

  private id(): string {
    this.nextId += 1;
    return `w${this.nextId}`;
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    this.retryTimer = this.pingTimer = this.watchdog = null;
  }
}
