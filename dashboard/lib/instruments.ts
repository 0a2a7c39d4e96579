// The instrument master as the page uses it (GET /api/instruments `details`): details by symbol,
// the labels and the search of the add box, the market status badge, and when to ask again
// (a market opens and closes at times the server announces). Pure.

import { parseDecimal } from "./decimal";
import { places } from "./format";
import { hasStamp, msSince } from "./nanos";
import type { InstrumentDetails, MarketStatus } from "./types";

export type DetailsIndex = ReadonlyMap<string, InstrumentDetails>;

export const EMPTY_DETAILS: DetailsIndex = new Map();

/** The details by symbol; entries without a symbol are dropped (the body is the server's word). */
export function indexDetails(details: readonly InstrumentDetails[] | null | undefined): Map<string, InstrumentDetails> {
  const index = new Map<string, InstrumentDetails>();
  if (!Array.isArray(details)) return index;
  for (const entry of details) {
    if (entry && typeof entry === "object" && typeof entry.symbol === "string") index.set(entry.symbol, entry);
  }
  return index;
}

/** The instrument's number of decimals, or undefined (unknown: prices are shown as they come). */
export function decimalsOf(detail: InstrumentDetails | undefined): number | undefined {
  return places(detail?.decimals);
}

/** The instrument's tick size when it is a positive decimal, else undefined. */
export function tickSizeOf(detail: InstrumentDetails | undefined): string | undefined {
  const tick = typeof detail?.tick_size === "string" ? parseDecimal(detail.tick_size) : null;
  return tick && !tick.negative && tick.units > 0n ? detail?.tick_size : undefined;
}

// An em dash between spaces: a symbol never has a space, so the symbol is what comes before it.
const LABEL_SEPARATOR = " — ";

/** How the add box offers an instrument: "AAPL — Apple Inc.", or the symbol alone. */
export function optionLabel(symbol: string, detail: InstrumentDetails | undefined): string {
  const name = typeof detail?.name === "string" ? detail.name.trim() : "";
  return name ? `${symbol}${LABEL_SEPARATOR}${name}` : symbol;
}

function rank(symbol: string, name: string, wanted: string): number {
  const [s, n] = [symbol.toLowerCase(), name.toLowerCase()];
  if (s.startsWith(wanted)) return 0;
  if (s.includes(wanted)) return 1;
  if (n.startsWith(wanted) || n.includes(` ${wanted}`)) return 2;
  if (n.includes(wanted)) return 3;
  // The whole label, as the box holds it once an option is picked.
  if (`${s}${LABEL_SEPARATOR}${n}`.includes(wanted)) return 4;
  return -1;
}

/** Symbols whose symbol or name contains `query` (case-insensitive): symbol matches first, then
 * names (a word's start before the middle of one), each alphabetical; at most `limit`. */
export function searchInstruments(symbols: readonly string[], details: DetailsIndex, query: string, limit = 50): string[] {
  const wanted = query.trim().toLowerCase();
  return symbols
    .map((symbol) => ({ symbol, at: wanted ? rank(symbol, details.get(symbol)?.name ?? "", wanted) : 0 }))
    .filter(({ at }) => at >= 0)
    .sort((a, b) => a.at - b.at || a.symbol.localeCompare(b.symbol))
    .slice(0, limit)
    .map(({ symbol }) => symbol);
}

/** The symbol the user means by what they typed or picked: the symbol of a picked label, a
 * known symbol in any case ("aapl" → "AAPL"), the one instrument with exactly that name, or
 * else the text itself (an instrument the master does not list yet may still be added). */
export function resolveInstrument(text: string, symbols: readonly string[], details: DetailsIndex): string {
  const typed = text.trim();
  const symbol = typed.split(LABEL_SEPARATOR)[0].trim();
  const known = symbols.find((candidate) => candidate.toLowerCase() === symbol.toLowerCase());
  if (known) return known;
  const named = symbols.filter((candidate) => details.get(candidate)?.name?.trim().toLowerCase() === typed.toLowerCase());
  return named.length === 1 ? named[0] : symbol;
}

const STATUS_LABEL: Record<MarketStatus, string> = { open: "Open", pre_open: "Pre", closed: "Closed" };

/** The badge's text, or null for a status this page does not know. */
export function marketStatusLabel(status: unknown): string | null {
  return typeof status === "string" && Object.hasOwn(STATUS_LABEL, status) ? STATUS_LABEL[status as MarketStatus] : null;
}

/** The badge's tooltip: the status and the calendar it follows (no clock time: the server and
 * the browser render it alike, whatever their time zones). */
export function marketStatusTitle(detail: InstrumentDetails): string {
  const status = { open: "Market open", pre_open: "Pre-open", closed: "Market closed" }[detail.market_status] ?? detail.market_status;
  const calendar = detail.calendar;
  if (!calendar) return status;
  if (calendar.hours === "24/7") return `${status}: trades 24/7`;
  const preOpen = calendar.pre_open ? `, pre-open from ${calendar.pre_open}` : "";
  return `${status}: hours ${calendar.hours} ${calendar.timezone}, ${calendar.days}${preOpen}`;
}

export interface RefreshTiming {
  /** Ask at least this often anyway: new instruments, renamed ones, a boundary missed. */
  maxMs: number;
  /** After a boundary, wait this much more: the server decides the status on its own clock. */
  marginMs: number;
  /** Never sooner than this after the last answer. */
  minMs: number;
}

export const REFRESH_TIMING: RefreshTiming = { maxMs: 60_000, marginMs: 1_000, minMs: 1_000 };

/** How long until /api/instruments should be asked again: just after the earliest
 * `status_until_ns` still ahead, and within a minute anyway. A boundary already past is
 * ignored: the server answered after it and still said so (its clock is behind ours), and
 * asking again at once would loop; the minute's refresh picks the change up. */
export function nextRefreshMs(details: Iterable<InstrumentDetails>, nowMs: number, timing: RefreshTiming = REFRESH_TIMING): number {
  let delay = timing.maxMs;
  for (const detail of details) {
    if (!hasStamp(detail.status_until_ns)) continue; // "0": 24/7, it never changes
    const ahead = -msSince(detail.status_until_ns, nowMs);
    if (ahead > 0) delay = Math.min(delay, ahead + timing.marginMs);
  }
  return Math.max(timing.minMs, Math.ceil(delay));
}
