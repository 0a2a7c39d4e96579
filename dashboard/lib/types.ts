// The JSON of protocol v1 (docs/websocket.md) as the dashboard reads it. Decimals are strings
// (a JSON number would become a binary float), unknown ones null; times are epoch nanoseconds,
// read by `parseJson` (lib/nanos.ts) as their exact digits: they exceed Number.MAX_SAFE_INTEGER.

import type { Nanos } from "./nanos";

export type { Nanos };

export type Decimal = string | null;

export interface Bar {
  start_time_ns: Nanos;
  open: Decimal;
  high: Decimal;
  low: Decimal;
  close: Decimal;
  volume: Decimal;
  trade_count: number;
}

/** A bar as /api/bars returns it: also the session VWAP as of the bar's last change. */
export interface StoredBar extends Bar {
  vwap?: Decimal;
}

export interface StageTimes {
  exchange_ns: Nanos;
  ingest_ns: Nanos;
  processed_ns: Nanos;
  cached_ns: Nanos;
  sent_ns: Nanos;
}

export type ChangeBasis = "previous_close" | "session_open";

export interface InstrumentState {
  instrument: string;
  venue: string;
  version: number;
  last_price: Decimal;
  last_size: Decimal;
  bid_price: Decimal;
  ask_price: Decimal;
  mid: Decimal;
  spread: Decimal;
  spread_bps: number | null;
  session_open: Decimal;
  session_high: Decimal;
  session_low: Decimal;
  session_volume: Decimal;
  trade_count: number;
  vwap: Decimal;
  /** From `previous_close` when known, else from `session_open` (see `change_basis`). */
  change: Decimal;
  change_pct: number | null;
  /** The previous session's close; absent from servers before issue 17, null until known. */
  previous_close?: Decimal;
  /** What `change` is measured from; absent from older servers (they measured from the open). */
  change_basis?: ChangeBasis;
  session_close?: Decimal;
  bar_1s: Bar | null;
  bar_1m: Bar | null;
  times: StageTimes;
}

export type MarketStatus = "open" | "pre_open" | "closed";

export interface TradingCalendar {
  timezone: string;
  /** "09:30-16:00", "17:00-16:00" (opens the day before) or "24/7". */
  hours: string;
  days: string;
  /** "HH:MM", or "" when there is no pre-open. */
  pre_open: string;
  /** ISO dates of trading days on which it does not trade (absent from older servers). */
  holidays?: string[];
}

/** An instrument of the master as GET /api/instruments describes it (`details`). */
export interface InstrumentDetails {
  symbol: string;
  name: string;
  asset_class: string;
  currency: string;
  venue: string;
  tick_size: string;
  /** How many decimals its prices are shown with (at least the tick size's). */
  decimals: number;
  lot_size: string;
  calendar: TradingCalendar;
  market_status: MarketStatus;
  /** When `market_status` next changes, epoch ns as exact digits; "0" for 24/7 (never). */
  status_until_ns: Nanos;
}

export type AlertDirection = "above" | "below";
export type AlertStatus = "active" | "triggered" | "cancelled" | "rejected";

export interface Alert {
  alert_id: string;
  user_id: string;
  instrument: string;
  direction: AlertDirection;
  price: string;
  created_ns: Nanos;
}

export interface AlertEvent {
  type: "alert";
  status: AlertStatus;
  alert: Alert;
  trigger_price: Decimal;
  trigger_version: number;
  reason: string;
  event_ns: Nanos;
}

export interface Welcome {
  type: "welcome";
  protocol: number;
  connection_id: string;
  user_id: string;
  heartbeat_s: number;
  idle_timeout_s: number;
}

export interface Snapshot {
  type: "snapshot";
  id?: string;
  reason: "subscribe" | "resync";
  states: InstrumentState[];
  missing: string[];
  resumed: Record<string, { from: number; to: number }>;
  gaps: string[];
  /** instrument → the server's version, for a `since` beyond it (nothing follows until it passes). */
  ahead?: Record<string, number>;
}

export interface Update {
  type: "update";
  instrument: string;
  version: number;
  state: InstrumentState;
}

export interface Conflated {
  type: "conflated";
  dropped: number;
  instruments: string[];
}

export interface ServerError {
  type: "error";
  id?: string;
  code: string;
  reason: string;
}

export type ServerMessage =
  | Welcome
  | Snapshot
  | Update
  | { type: "updates"; updates: Update[] }
  | Conflated
  | ServerError
  | AlertEvent
  | { type: "alert.accepted"; id?: string; alert_id: string }
  | { type: "alert.list"; id?: string; alerts: Omit<AlertEvent, "type">[] }
  | { type: "unsubscribed"; id?: string; instruments: string[] }
  | { type: "pong"; id?: string; server_time_ns: Nanos }
  | { type: "heartbeat"; server_time_ns: Nanos };
