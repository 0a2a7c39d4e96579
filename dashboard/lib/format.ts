// How numbers look on the page. Decimals arrive as strings and are shown as they came (the
// feed's own precision); only derived figures are rounded here.

import type { Decimal } from "./types";

export const DASH = "—";

export function decimal(value: Decimal | undefined): string {
  return value ?? DASH;
}

/** A derived decimal (VWAP) cut to `places` decimals for reading; the feed keeps more. */
export function rounded(value: Decimal | undefined, places = 4): string {
  if (value === null || value === undefined) return DASH;
  const [whole, fraction] = value.split(".");
  return fraction && fraction.length > places ? `${whole}.${fraction.slice(0, places)}` : value;
}

export function percent(value: number | null | undefined): string {
  if (value === null || value === undefined) return DASH;
  const sign = value > 0 ? "+" : "";
  return `${sign}${value.toFixed(2)}%`;
}

export function signed(value: Decimal | undefined): string {
  if (value === null || value === undefined) return DASH;
  return value.startsWith("-") ? value : `+${value}`;
}

/** Volume in a compact form: 1234567 → 1.23M. */
export function volume(value: Decimal | undefined): string {
  if (value === null || value === undefined) return DASH;
  const n = Number(value);
  if (!Number.isFinite(n)) return value;
  const units: [number, string][] = [
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "k"],
  ];
  for (const [size, unit] of units) if (Math.abs(n) >= size) return `${(n / size).toFixed(2)}${unit}`;
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
