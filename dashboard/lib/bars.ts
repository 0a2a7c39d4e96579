// Bars into chart points (pure). The chart's time axis is in UTC seconds.

import { nanosToSeconds } from "./nanos";
import type { Bar, InstrumentState, StoredBar } from "./types";

export type Interval = "1s" | "1m";
export const INTERVALS: readonly Interval[] = ["1s", "1m"];

export interface Candle {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
}

export interface LinePoint {
  time: number;
  value: number;
}

export function candleOf(bar: Bar): Candle | null {
  const [open, high, low, close] = [bar.open, bar.high, bar.low, bar.close].map(Number);
  if (![open, high, low, close].every(Number.isFinite)) return null;
  return { time: nanosToSeconds(bar.start_time_ns), open, high, low, close };
}

/** Candles and VWAP points from stored bars, oldest first, one per time (the chart requires it). */
export function chartData(bars: readonly StoredBar[]): { candles: Candle[]; vwap: LinePoint[] } {
  const candles: Candle[] = [];
  const vwap: LinePoint[] = [];
  for (const bar of bars) {
    const candle = candleOf(bar);
    if (!candle || (candles.length && candles[candles.length - 1].time >= candle.time)) continue;
    candles.push(candle);
    const value = bar.vwap == null ? NaN : Number(bar.vwap);
    if (Number.isFinite(value)) vwap.push({ time: candle.time, value });
  }
  return { candles, vwap };
}

/** The forming bar of `interval` in a live state, with the session VWAP at that time. */
export function livePoint(state: InstrumentState, interval: Interval): { candle: Candle; vwap: LinePoint | null } | null {
  const bar = interval === "1s" ? state.bar_1s : state.bar_1m;
  const candle = bar ? candleOf(bar) : null;
  if (!candle) return null;
  const value = state.vwap == null ? NaN : Number(state.vwap);
  return { candle, vwap: Number.isFinite(value) ? { time: candle.time, value } : null };
}
