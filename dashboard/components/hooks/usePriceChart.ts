"use client";

import {
  CandlestickSeries,
  ColorType,
  LineSeries,
  createChart,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { useEffect, useRef, useState, type RefObject } from "react";

import { errorOf, getBars } from "@/lib/api";
import { chartData, livePoint, type Interval } from "@/lib/bars";
import type { Feed } from "@/lib/feed";
import { chartPriceFormats } from "@/lib/format";

export const BAR_LIMIT = 300;

export interface Series {
  chart: IChartApi;
  candles: ISeriesApi<"Candlestick">;
  vwap: ISeriesApi<"Line">;
}

/** A candlestick chart with a VWAP line in `container`, made on mount and removed on unmount. */
export function useChartSeries(container: RefObject<HTMLDivElement | null>): RefObject<Series | null> {
  const series = useRef<Series | null>(null);
  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const chart = createChart(element, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: "#0f131a" },
        textColor: "#9aa6b8",
        fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
        attributionLogo: false,
      },
      grid: { vertLines: { color: "#1b222d" }, horzLines: { color: "#1b222d" } },
      timeScale: { timeVisible: true, secondsVisible: true, borderColor: "#263040" },
      rightPriceScale: { borderColor: "#263040" },
    });
    const candles = chart.addSeries(CandlestickSeries, {
      upColor: "#22c55e",
      downColor: "#ef4444",
      wickUpColor: "#22c55e",
      wickDownColor: "#ef4444",
      borderVisible: false,
    });
    const vwap = chart.addSeries(LineSeries, {
      color: "#f5c542",
      lineWidth: 2,
      priceLineVisible: false,
      title: "VWAP",
    });
    series.current = { chart, candles, vwap };
    return () => {
      series.current = null;
      chart.remove();
    };
  }, [container]);

  return series;
}

/** The price axis and the series' labels at the instrument's decimals on its tick (the VWAP one
 * decimal finer, as in the grid); the library's default while they are unknown. Declared after
 * useChartSeries, so on mount it runs once the series exist. */
export function useChartFormat(series: RefObject<Series | null>, decimals: number | undefined, tickSize: string | undefined): void {
  useEffect(() => {
    const target = series.current;
    if (!target) return;
    const formats = chartPriceFormats(decimals, tickSize);
    target.candles.applyOptions({ priceFormat: formats.candles });
    target.vwap.applyOptions({ priceFormat: formats.vwap });
  }, [series, decimals, tickSize]);
}

interface DataOptions {
  series: RefObject<Series | null>;
  instrument: string;
  interval: Interval;
  feed: Feed;
  apiUrl: string;
  token: string | null;
}

/** Bars into the chart: history from /api/bars whenever the instrument or interval changes,
 * then the forming bar from the live feed on top. Answers how many bars there are and why the
 * history is missing, if it is. */
export function useChartData({ series, instrument, interval: barInterval, feed, apiUrl, token }: DataOptions): {
  bars: number;
  error: string | null;
} {
  const lastTime = useRef(0);
  const [bars, setBars] = useState(0);
  const [error, setError] = useState<string | null>(null);

  // History from REST whenever the instrument or interval changes; then the live bar on top.
  useEffect(() => {
    const controller = new AbortController();
    getBars(apiUrl, instrument, barInterval, BAR_LIMIT, { token, signal: controller.signal })
      .then(({ ok, status, body }) => {
        if (!ok || !body) throw new Error(errorOf(body, ok ? "malformed answer" : `HTTP ${status}`));
        return body.bars;
      })
      .then((stored) => {
        const target = series.current;
        if (!target) return;
        const data = chartData(stored);
        target.candles.setData(data.candles.map((c) => ({ ...c, time: c.time as UTCTimestamp })));
        target.vwap.setData(data.vwap.map((p) => ({ ...p, time: p.time as UTCTimestamp })));
        lastTime.current = data.candles.length ? data.candles[data.candles.length - 1].time : 0;
        setBars(data.candles.length);
        setError(null);
        applyLive();
        target.chart.timeScale().scrollToRealTime();
      })
      .catch((reason: Error) => {
        if (reason.name !== "AbortError") setError(`history unavailable: ${reason.message}`);
      });

    function applyLive() {
      const target = series.current;
      const state = feed.book.get(instrument);
      if (!target || !state) return;
      const point = livePoint(state, barInterval);
      // The chart only accepts the latest bar or a newer one; an older forming bar is history.
      if (!point || point.candle.time < lastTime.current) return;
      if (point.candle.time > lastTime.current) setBars((n) => n + 1);
      lastTime.current = point.candle.time;
      target.candles.update({ ...point.candle, time: point.candle.time as UTCTimestamp });
      if (point.vwap) target.vwap.update({ ...point.vwap, time: point.vwap.time as UTCTimestamp });
    }

    let version = feed.book.get(instrument)?.version ?? 0;
    const unsubscribe = feed.subscribe(() => {
      const now = feed.book.get(instrument)?.version ?? 0;
      if (now === version) return;
      version = now;
      applyLive();
    });
    return () => {
      controller.abort();
      unsubscribe();
    };
  }, [series, instrument, barInterval, apiUrl, token, feed]);

  return { bars, error };
}
