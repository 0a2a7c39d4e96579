// The watchlist grid's columns, filter and sort: pure functions of the states.

import type { InstrumentState } from "./types";

export type ColumnKey =
  | "instrument"
  | "last_price"
  | "bid_price"
  | "ask_price"
  | "spread"
  | "change"
  | "change_pct"
  | "vwap"
  | "session_volume"
  | "session_high"
  | "session_low";

export interface Column {
  key: ColumnKey;
  label: string;
  numeric: boolean;
}

export const COLUMNS: readonly Column[] = [
  { key: "instrument", label: "Instrument", numeric: false },
  { key: "last_price", label: "Last", numeric: true },
  { key: "bid_price", label: "Bid", numeric: true },
  { key: "ask_price", label: "Ask", numeric: true },
  { key: "spread", label: "Spread", numeric: true },
  { key: "change", label: "Chg", numeric: true },
  { key: "change_pct", label: "Chg %", numeric: true },
  { key: "vwap", label: "VWAP", numeric: true },
  { key: "session_volume", label: "Volume", numeric: true },
  { key: "session_high", label: "High", numeric: true },
  { key: "session_low", label: "Low", numeric: true },
];

export interface Sort {
  key: ColumnKey;
  descending: boolean;
}

export function matches(instrument: string, filter: string): boolean {
  const wanted = filter.trim().toUpperCase();
  return wanted === "" || instrument.toUpperCase().includes(wanted);
}

function sortValue(state: InstrumentState | undefined, key: ColumnKey): number | string | null {
  if (!state) return null;
  const value = state[key];
  if (value === null || value === undefined) return null;
  if (key === "instrument") return String(value);
  const n = typeof value === "number" ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

/** The rows to show: instruments matching `filter`, ordered by `sort`; unknown values last. */
export function visibleRows(
  instruments: readonly string[],
  states: (name: string) => InstrumentState | undefined,
  filter: string,
  sort: Sort,
): string[] {
  const rows = instruments.filter((name) => matches(name, filter));
  const direction = sort.descending ? -1 : 1;
  return rows.sort((a, b) => {
    const x = sort.key === "instrument" ? a : sortValue(states(a), sort.key);
    const y = sort.key === "instrument" ? b : sortValue(states(b), sort.key);
    if (x === null && y === null) return a.localeCompare(b);
    if (x === null) return 1;
    if (y === null) return -1;
    if (x < y) return -direction;
    if (x > y) return direction;
    return a.localeCompare(b);
  });
}

/** Clicking a header sorts by it; clicking the same one again flips the order. */
export function nextSort(current: Sort, key: ColumnKey): Sort {
  if (current.key === key) return { key, descending: !current.descending };
  return { key, descending: key !== "instrument" };
}
