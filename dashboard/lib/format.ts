// How numbers look on the page. Decimals arrive as strings in their canonical form (211.4, not
// 211.40); a desk reads prices at the instrument's fixed number of decimals, so a column of them
// lines up and does not jitter as the last digit comes and goes. All rounding and padding is
// exact (lib/decimal.ts). Without the instrument's details a price is shown as it came.
//
// Separators are fixed (",", ".") rather than the browser's locale: the server renders the
// first paint and the browser then takes it over, and the two must print the same text.

import { fixedDecimal, parseDecimal, roundTo, shiftPoint, signOf, toText } from "./decimal";
import type { Decimal } from "./types";

export const DASH = "—";

/** The most decimals an instrument may have: the contract's fraction digits (MAX_FRACTION_DIGITS
 * in tapewire/decimals.py). */
export const MAX_DECIMALS = 15;
/** Derived figures (VWAP) of an instrument without details: at most this many decimals. */
const UNKNOWN_DERIVED_PLACES = 4;

/** `decimals` when it is a usable number of places, else undefined (show values as they come). */
export function places(decimals: number | null | undefined): number | undefined {
  return typeof decimals === "number" && Number.isInteger(decimals) && decimals >= 0 && decimals <= MAX_DECIMALS ? decimals : undefined;
}

/** A price (last, bid, ask, open, high, low, previous close, spread) at the instrument's
 * decimals: "211.4" → "211.40", "461" → "461.00"; more digits than that are rounded half away
 * from zero. Unknown decimals: as it came. Not grouped by thousands (97250.50, as a ticket or
 * an alert takes it): fixed decimals and tabular figures already keep the column aligned. */
export function price(value: Decimal | undefined, decimals?: number | null): string {
  if (value === null || value === undefined) return DASH;
  const fixed = places(decimals);
  if (fixed === undefined) return value;
  return fixedDecimal(value, fixed) ?? value;
}

/** A price derived by averaging (VWAP) or halving (mid) at one decimal more than the
 * instrument's. Why one more: the mid of two prices on the tick grid is exact at one more digit
 * (half of 0.01 is 0.005, half of 0.25 is 0.125), and one more digit tells where a VWAP sits
 * between two ticks, which is what it is read for; more would be noise, and a fixed count keeps
 * the column still. Unknown decimals: at most 4, rounded (not padded). */
export function derivedPrice(value: Decimal | undefined, decimals?: number | null): string {
  if (value === null || value === undefined) return DASH;
  const fixed = places(decimals);
  if (fixed !== undefined) return fixedDecimal(value, fixed + 1) ?? value;
  return rounded(value, UNKNOWN_DERIVED_PLACES);
}

/** A derived decimal cut to at most `places` decimals for reading (rounded half away from
 * zero, not padded); the feed keeps more. */
export function rounded(value: Decimal | undefined, places = UNKNOWN_DERIVED_PLACES): string {
  if (value === null || value === undefined) return DASH;
  const parsed = parseDecimal(value);
  if (!parsed || parsed.scale <= places) return value;
  return toText(roundTo(parsed, places));
}

/** A signed change at the instrument's decimals: "+1.20", "-0.35", and "+0.00" when unchanged
 * (a value that rounds to zero is unchanged as shown: no "-0.00"). Unknown decimals: as it
 * came, with its sign. */
export function signedPrice(value: Decimal | undefined, decimals?: number | null): string {
  if (value === null || value === undefined) return DASH;
  const text = price(value, decimals);
  return text.startsWith("-") ? text : `+${text}`;
}

/** A ratio in percent at 2 decimals, always signed: "+0.53%", "-1.20%", "+0.00%". */
export function percent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return DASH;
  // The shortest text of the double ("0.125") rounds as a person would; toFixed rounds the
  // binary value (1.005 is 1.00499…), and exponent forms (1e-7) fall back to it.
  const text = fixedDecimal(String(value), 2) ?? value.toFixed(2);
  const zero = signOf(text) === 0;
  return `${zero ? "+0.00" : text.startsWith("-") ? text : `+${text}`}%`;
}

/** A size or a volume in full, its whole part grouped by thousands: "1234567" → "1,234,567",
 * "0.5" → "0.5" (the fraction as it came: a lot of 0.0001 BTC has digits that matter). */
export function size(value: Decimal | undefined): string {
  if (value === null || value === undefined) return DASH;
  if (!parseDecimal(value)) return value;
  const [whole, fraction] = value.replace(/^[+-]/, "").split(".");
  const sign = value.startsWith("-") ? "-" : "";
  const grouped = whole.replace(/\B(?=(\d{3})+$)/g, ",");
  return fraction === undefined ? `${sign}${grouped}` : `${sign}${grouped}.${fraction}`;
}

const UNITS: readonly [number, string][] = [
  [9, "B"],
  [6, "M"],
  [3, "k"],
];

/** Volume in a compact form, 2 decimals of its unit, rounded half away from zero: 1234567 →
 * 1.23M; below 1,000 as it came (size() gives it in full). */
export function volume(value: Decimal | undefined): string {
  if (value === null || value === undefined) return DASH;
  const parsed = parseDecimal(value);
  if (!parsed) return value;
  const wholeDigits = (parsed.units / 10n ** BigInt(parsed.scale)).toString().length;
  for (const [index, [digits, unit]] of UNITS.entries()) {
    if (wholeDigits <= digits) continue;
    const text = toText(roundTo(shiftPoint(parsed, -digits), 2));
    // 999,999 is 1000.00k once rounded: then it is 1.00M.
    if (index > 0 && text.replace("-", "").startsWith("1000.")) {
      const [biggerDigits, biggerUnit] = UNITS[index - 1];
      return `${toText(roundTo(shiftPoint(parsed, -biggerDigits), 2))}${biggerUnit}`;
    }
    return `${text}${unit}`;
  }
  return value;
}

export function milliseconds(value: number | null): string {
  if (value === null) return DASH;
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

/** -1, 0 or 1: which way `next` moved from `previous` (decimal strings; null means unknown). */
export function direction(previous: Decimal | undefined, next: Decimal | undefined): -1 | 0 | 1 {
  if (previous == null || next == null) return 0;
  const a = Number(previous);
  const b = Number(next);
  return b > a ? 1 : b < a ? -1 : 0;
}

/** lightweight-charts' price format of a series shown at `decimals` on a grid of `step`. */
export interface ChartPriceFormat {
  type: "price";
  precision: number;
  minMove: number;
}

/** The library's own default (2 decimals, a cent): what the chart showed before details. */
export const DEFAULT_CHART_FORMAT: ChartPriceFormat = { type: "price", precision: 2, minMove: 0.01 };

/** The chart's formats for an instrument: candles at its decimals on its tick (the axis labels
 * and the last-price label read like the grid), the VWAP line at one decimal more (as in the
 * grid, see derivedPrice). Unknown or unusable details: the library's default. */
export function chartPriceFormats(
  decimals: number | null | undefined,
  tickSize: string | null | undefined,
): { candles: ChartPriceFormat; vwap: ChartPriceFormat } {
  const fixed = places(decimals);
  const tick = tickSize ? parseDecimal(tickSize) : null;
  if (fixed === undefined || !tick || tick.negative || tick.units === 0n || tick.scale > fixed) {
    return { candles: DEFAULT_CHART_FORMAT, vwap: DEFAULT_CHART_FORMAT };
  }
  return {
    // The chart draws with doubles anyway; these two only steer its labels.
    candles: { type: "price", precision: fixed, minMove: Number(tickSize) },
    vwap: { type: "price", precision: fixed + 1, minMove: Number(`1e-${fixed + 1}`) },
  };
}
