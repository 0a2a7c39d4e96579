// The live connection: protocol v1 over a browser WebSocket. It keeps the Book current,
// reconnects with backoff and resumes from the versions the Book holds, answers the server's
// liveness rules, and carries alert commands. The page reads it through `view()`.

import { Book } from "./book";
import { LatencyWindow, RateMeter, backoffMs } from "./stats";
import type { AlertDirection, AlertEvent, InstrumentState, ServerMessage, Snapshot } from "./types";

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
}

const REQUEST_TIMEOUT_MS = 10_000;

/** Wall-clock now in milliseconds with sub-millisecond precision, as the stamps are epoch based. */
function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

export class Feed {
  readonly book: Book;
  private socket: WebSocket | null = null;
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
  private readonly pending = new Map<string, (message: ServerMessage) => void>();
  private readonly latency = new LatencyWindow();
  private readonly rate = new RateMeter();
  private readonly listeners = new Set<() => void>();
  private readonly changed = new Set<string>();
  /** instrument → the last version being replayed from history: those are not live, so they
   * count as resumed but not in the latency figures. */
  private readonly replayingUntil = new Map<string, number>();

  constructor(private readonly options: FeedOptions) {
    this.book = new Book(options.initial);
    this.instruments = [...options.instruments];
    this.watched = new Set(this.instruments);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.socket?.close(1000, "page closed");
    this.socket = null;
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
    const now = epochMs();
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
    for (const name of removed) this.book.forget(name);
    if (this.socket?.readyState !== WebSocket.OPEN) return;
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
    if (this.socket?.readyState !== WebSocket.OPEN) {
      return Promise.resolve({ ok: false, error: "not connected: try again when live" });
    }
    const id = this.id();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ ok: false, error: "no reply from the server" });
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.type === "error") resolve({ ok: false, error: `${reply.code}: ${reply.reason}` });
        else if (reply.type === "alert.accepted") resolve({ ok: true, alertId: reply.alert_id });
        else resolve({ ok: true });
      });
      this.send({ ...message, id });
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const url = new URL(this.options.url);
    if (this.options.token) url.searchParams.set("token", this.options.token);
    // Several updates per frame when they queue up (docs/websocket.md): fewer frames to parse.
    url.searchParams.set("batch", "true");
    const socket = new WebSocket(url.toString(), ["tapewire.v1.json"]);
    this.socket = socket;
    socket.onmessage = (event) => this.onFrame(event.data);
    socket.onclose = (event) => this.onClose(socket, event.code, event.reason);
    // An error is always followed by a close, where we decide what to do.
    socket.onerror = () => undefined;
  }

  private onClose(socket: WebSocket, code: number, reason: string): void {
    if (socket !== this.socket) return;
    this.socket = null;
    this.clearTimers();
    for (const resolve of this.pending.values()) resolve({ type: "error", code: "disconnected", reason: "connection lost" });
    this.pending.clear();
    if (this.stopped) return;
    if (code === 4001) {
      this.setStatus("unauthorized", `the server refused the token (${reason || "4001"}): log in again`);
      return;
    }
    // 1012 (instance draining) means "come back at once"; anything else backs off.
    const delay = code === 1012 ? 0 : backoffMs(this.attempt, Math.random());
    this.attempt += 1;
    this.setStatus("reconnecting", `connection lost (${code}${reason ? ` ${reason}` : ""}); retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private onFrame(data: unknown): void {
    if (typeof data !== "string") return;
    this.lastHeardMs = Date.now();
    let message: ServerMessage;
    try {
      message = JSON.parse(data) as ServerMessage;
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
    if ("id" in message && message.id && this.pending.has(message.id)) {
      const resolve = this.pending.get(message.id)!;
      this.pending.delete(message.id);
      resolve(message);
    }
  }

  private onWelcome(userId: string, heartbeatS: number, idleTimeoutS: number): void {
    this.userId = userId;
    this.attempt = 0;
    if (this.everConnected) this.reconnects += 1;
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
    const replayed = Object.values(snapshot.resumed).reduce((n, r) => n + Math.max(0, r.to - r.from + 1), 0);
    this.book.applySnapshot(snapshot);
    for (const [name, range] of Object.entries(snapshot.resumed)) this.replayingUntil.set(name, range.to);
    this.historyGaps += snapshot.gaps.length;
    for (const state of snapshot.states) this.changed.add(state.instrument);
    let notice = "live";
    if (snapshot.reason === "resync") notice = "resynced with the server";
    else if (this.everConnected && Object.keys(snapshot.resumed).length) {
      notice = `reconnected: resumed ${replayed} missed updates` + (snapshot.gaps.length ? `, ${snapshot.gaps.length} fresh (history too short)` : ", no gaps");
    }
    this.everConnected = true;
    this.setStatus("live", notice);
  }

  private onUpdate(state: InstrumentState): void {
    if (!this.watched.has(state.instrument)) return;
    if (this.book.applyUpdate(state) === "stale") return;
    const now = epochMs();
    const replayed = (this.replayingUntil.get(state.instrument) ?? 0) >= state.version;
    if (!replayed && state.times.ingest_ns > 0) this.latency.add(now - state.times.ingest_ns / 1e6);
    this.rate.add(now);
    this.changed.add(state.instrument);
    if (this.status === "resyncing") this.setStatus("live", "caught up");
    else this.emit();
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
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
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
