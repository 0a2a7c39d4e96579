// Nanosecond stamps (`*_ns`: Unix epoch nanoseconds, about 1.8e18 today) are beyond
// Number.MAX_SAFE_INTEGER (about 9.0e15): as a JSON number they would lose their last digits
// (a double near 1.8e18 is only good to 256 ns). The server sends them as JSON integers, so
// `parseJson` reads every integer under a key ending in `_ns` as its exact decimal string, and
// the arithmetic on them goes through BigInt; only the (small) differences become numbers.

/** An epoch-nanosecond stamp, as the exact decimal digits the server sent. */
export type Nanos = string;

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

// A JSON string (consumed whole, so the scan never starts inside one), optionally followed by a
// colon and an integer: a key and its integer value.
const TOKEN = /"((?:[^"\\]|\\.)*)"(\s*:\s*)(-?\d+)(?=\s*[,}\]])|"(?:[^"\\]|\\.)*"/g;

/** JSON.parse, except that integers under keys ending in `_ns` become their exact digits. */
export function parseJson(text: string): unknown {
  if (!text.includes('_ns"')) return JSON.parse(text);
  const quoted = text.replace(TOKEN, (match, key: string | undefined, colon: string, digits: string) =>
    key !== undefined && key.endsWith("_ns") ? `"${key}"${colon}"${digits}"` : match,
  );
  return JSON.parse(quoted);
}

/** A stamp as a BigInt, whatever form it came in (digits, a number from an older writer). */
export function nanosToBigInt(value: Nanos | number | bigint | null | undefined): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return Number.isFinite(value) ? BigInt(Math.trunc(value)) : 0n;
  if (typeof value === "string" && /^-?\d+$/.test(value.trim())) return BigInt(value.trim());
  return 0n;
}

/** Whether a stamp is set (the protocol sends 0 for a stage that did not stamp). */
export function hasStamp(value: Nanos | number | null | undefined): boolean {
  return nanosToBigInt(value) > 0n;
}

/** `nowMs` (epoch milliseconds, fractional) minus a nanosecond stamp, in milliseconds, without
 * ever holding the stamp in a double: whole milliseconds and the remainder apart. */
export function msSince(stamp: Nanos | number | bigint, nowMs: number): number {
  const ns = nanosToBigInt(stamp);
  const wholeMs = ns / NS_PER_MS;
  const restNs = ns % NS_PER_MS;
  return nowMs - Number(wholeMs) - Number(restNs) / 1e6;
}

/** `later - earlier` in milliseconds (each hop's share of the latency). */
export function msBetween(earlier: Nanos | number | bigint, later: Nanos | number | bigint): number {
  const diff = nanosToBigInt(later) - nanosToBigInt(earlier);
  return Number(diff / NS_PER_MS) + Number(diff % NS_PER_MS) / 1e6;
}

/** Whole epoch seconds of a stamp (rounded down), e.g. a bar's time on the chart's axis. */
export function nanosToSeconds(stamp: Nanos | number | bigint): number {
  const ns = nanosToBigInt(stamp);
  const seconds = ns / NS_PER_S;
  return Number(ns < 0n && ns % NS_PER_S !== 0n ? seconds - 1n : seconds);
}

/** -1, 0 or 1, as a sort comparator of stamps. */
export function compareNanos(a: Nanos | number | bigint, b: Nanos | number | bigint): number {
  const x = nanosToBigInt(a);
  const y = nanosToBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A stamp of epoch milliseconds (Date.now()). */
export function nanosFromMs(ms: number): Nanos {
  return (BigInt(Math.trunc(ms)) * NS_PER_MS).toString();
}
