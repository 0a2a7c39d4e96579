// The watchlist grid's columns, what each cell reads, filter and sort: pure functions of the
// states and the instruments' decimals.

import { signOf } from "./decimal";
import { derivedPrice, percent, price, signedPrice, size, volume } from "./format";
import type { InstrumentState } from "./types";

export type ColumnKey =
  | "instrument"
  | "last_price"
  | "bid_price"
  | "ask_price"
  | "spread"
  | "change"
  | "change_pct"
  | "previous_close"
  | "vwap"
  | "session_volume"
  | "session_open"
  | "session_high"
  | "session_low";

/** How a column's values are shown (lib/format.ts). */
export type ColumnFormat = "text" | "price" | "signed" | "percent" | "derived" | "volume";

export interface Column {
  key: ColumnKey;
  label: string;
  numeric: boolean;
  format: ColumnFormat;
  /** The header's tooltip. */
  title?: string;
}

export const COLUMNS: readonly Column[] = [
  { key: "instrument", label: "Instrument", numeric: false, format: "text" },
  { key: "last_price", label: "Last", numeric: true, format: "price" },
  { key: "bid_price", label: "Bid", numeric: true, format: "price" },
  { key: "ask_price", label: "Ask", numeric: true, format: "price" },
  { key: "spread", label: "Spread", numeric: true, format: "price" },
  {
    key: "change",
    label: "Chg",
    numeric: true,
    format: "signed",
    title: "Change from the previous session's close (* from this session's open: no previous close yet)",
  },
  {
    key: "change_pct",
    label: "Chg %",
    numeric: true,
    format: "percent",
    title: "Change from the previous session's close, in % (* from this session's open)",
  },
  { key: "previous_close", label: "Prev close", numeric: true, format: "price", title: "The previous session's close" },
  { key: "vwap", label: "VWAP", numeric: true, format: "derived", title: "Session VWAP, one decimal finer than the price" },
  { key: "session_volume", label: "Volume", numeric: true, format: "volume" },
  { key: "session_open", label: "Open", numeric: true, format: "price" },
  { key: "session_high", label: "High", numeric: true, format: "price" },
  { key: "session_low", label: "Low", numeric: true, format: "price" },
];

/** Where a change is measured from when the server says it is not the previous close. */
export const FROM_OPEN_TITLE = "from this session's open: no previous close yet";

/** The text of a cell, at the instrument's `decimals` (undefined: values as they came). */
export function cellText(state: InstrumentState, column: Column, decimals: number | undefined): string {
  switch (column.format) {
    case "text":
      return String(state[column.key] ?? "");
    case "signed":
      return signedPrice(state[column.key] as string | null | undefined, decimals);
    case "percent":
      return percent(state[column.key] as number | null | undefined);
    case "derived":
      return derivedPrice(state[column.key] as string | null | undefined, decimals);
    case "volume":
      return volume(state[column.key] as string | null | undefined);
    default:
      return price(state[column.key] as string | null | undefined, decimals);
  }
}

/** "up", "down" or "" for the change columns: the sign of the change as shown (a change that
 * rounds to +0.00 is no change). */
export function changeTone(state: InstrumentState, decimals: number | undefined): "up" | "down" | "" {
  if (state.change == null) return "";
  const sign = signOf(price(state.change, decimals));
  return sign === 1 ? "up" : sign === -1 ? "down" : "";
}

/** Whether the change is from the session's open (no previous close yet), not the usual. */
export function changeFromOpen(state: InstrumentState): boolean {
  return state.change_basis === "session_open";
}

/** A cell's tooltip: why a change is marked, or the volume in full ("1,234,567"). */
export function cellTitle(state: InstrumentState, column: Column): string | undefined {
  if ((column.key === "change" || column.key === "change_pct") && changeFromOpen(state)) return FROM_OPEN_TITLE;
  if (column.format === "volume" && state[column.key] != null) return size(state[column.key] as string);
  return undefined;
}

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
