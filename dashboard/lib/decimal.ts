// Exact arithmetic on decimal strings, for display. A price is the string the server sent, and a
// binary float can hold neither 0.1 nor 1.005: (1.005).toFixed(2) is "1.00". So every rounding
// and padding goes through the digits themselves (BigInt), never through Number. Only what the
// page needs is here: read, round to a number of places, move the point, compare, test a step.

/** value = (negative ? -1 : 1) × units / 10^scale; units ≥ 0. */
export interface Parsed {
  negative: boolean;
  units: bigint;
  scale: number;
}

// The contract's grammar (digits, an optional fraction) plus a sign, as change and spread carry.
// Bounded: a longer string is not a price, and BigInt on megabytes of digits is not free.
const DECIMAL = /^([+-]?)(\d{1,30})(?:\.(\d{1,30}))?$/;

/** A decimal string taken apart, or null when it is not one (exponents, spaces, words). */
export function parseDecimal(text: string): Parsed | null {
  const match = DECIMAL.exec(text);
  if (!match) return null;
  const [, sign, whole, fraction = ""] = match;
  return { negative: sign === "-", units: BigInt(whole + fraction), scale: fraction.length };
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/** `value` at exactly `places` decimals: padded with zeros, or rounded half away from zero
 * (2.345 → 2.35, -2.345 → -2.35), as people round and as Python's ROUND_HALF_UP does. */
export function roundTo(value: Parsed, places: number): Parsed {
  if (value.scale <= places) return { ...value, units: value.units * pow10(places - value.scale), scale: places };
  const divisor = pow10(value.scale - places);
  const kept = value.units / divisor;
  const dropped = value.units % divisor;
  // The magnitude rounds up on a half or more: away from zero whatever the sign.
  return { ...value, units: dropped * 2n >= divisor ? kept + 1n : kept, scale: places };
}

/** The text of `value` with all of its `scale` decimals. Zero has no sign: never "-0.00". */
export function toText(value: Parsed): string {
  const digits = value.units.toString().padStart(value.scale + 1, "0");
  const whole = digits.slice(0, digits.length - value.scale);
  const text = value.scale > 0 ? `${whole}.${digits.slice(digits.length - value.scale)}` : whole;
  return value.negative && value.units !== 0n ? `-${text}` : text;
}

/** `text` at exactly `places` decimals (padded or rounded half away from zero), or null when it
 * is not a decimal string. */
export function fixedDecimal(text: string, places: number): string | null {
  const value = parseDecimal(text);
  return value ? toText(roundTo(value, places)) : null;
}

/** `value` × 10^digits, exactly (digits < 0 divides): the point moves, no digit is lost. */
export function shiftPoint(value: Parsed, digits: number): Parsed {
  const scale = value.scale - digits;
  return scale >= 0 ? { ...value, scale } : { ...value, units: value.units * pow10(-scale), scale: 0 };
}

function signedUnits(value: Parsed, scale: number): bigint {
  const units = value.units * pow10(scale - value.scale);
  return value.negative ? -units : units;
}

/** -1, 0 or 1 as `a` is below, equal to or above `b` (1.50 equals 1.5); null if either is not
 * a decimal string. */
export function compareDecimals(a: string, b: string): -1 | 0 | 1 | null {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (!x || !y) return null;
  const scale = Math.max(x.scale, y.scale);
  const [p, q] = [signedUnits(x, scale), signedUnits(y, scale)];
  return p < q ? -1 : p > q ? 1 : 0;
}

/** -1, 0 or 1: the sign of a decimal string ("-0.00" is 0); null if it is not one. */
export function signOf(text: string): -1 | 0 | 1 | null {
  const value = parseDecimal(text);
  if (!value) return null;
  return value.units === 0n ? 0 : value.negative ? -1 : 1;
}

/** Whether `text` is a whole number of `step`s (a price on the tick grid); null when either is
 * not a decimal string or the step is not positive. */
export function isMultipleOf(text: string, step: string): boolean | null {
  const value = parseDecimal(text);
  const unit = parseDecimal(step);
  if (!value || !unit || unit.negative || unit.units === 0n) return null;
  const scale = Math.max(value.scale, unit.scale);
  return signedUnits(value, scale) % signedUnits(unit, scale) === 0n;
}
