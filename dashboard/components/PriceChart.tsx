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
import { useEffect, useRef, useState } from "react";

import { INTERVALS, chartData, livePoint, type Interval } from "@/lib/bars";
import type { Feed } from "@/lib/feed";
import type { StoredBar } from "@/lib/types";

interface Props {
  instrument: string;
  feed: Feed;
  apiUrl: string;
  token: string | null;
}

const BAR_LIMIT = 300;

interface Series {
  chart: IChartApi;
  candles: ISeriesApi<"Candlestick">;
  vwap: ISeriesApi<"Line">;
}

/** Candles of 1 s or 1 min from /api/bars, the forming bar from the live feed, VWAP over them. */
export default function PriceChart({ instrument, feed, apiUrl, token }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const series = useRef<Series | null>(null);
  const lastTime = useRef(0);
  const [barInterval, setBarInterval] = useState<Interval>("1s");
  const [bars, setBars] = useState(0);
  const [error, setError] = useState<string | null>(null);

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
      upColor: "#22c55e", downColor: "#ef4444", wickUpColor: "#22c55e", wickDownColor: "#ef4444", borderVisible: false,
    });
    const vwap = chart.addSeries(LineSeries, {
      color: "#f5c542", lineWidth: 2, priceLineVisible: false, title: "VWAP",
    });
    series.current = { chart, candles, vwap };
    return () => {
      series.current = null;
      chart.remove();
    };
  }, []);

  // History from REST whenever the instrument or interval changes; then the live bar on top.
  useEffect(() => {
    const controller = new AbortController();
    const url = `${apiUrl}/api/bars?instrument=${encodeURIComponent(instrument)}&interval=${barInterval}&limit=${BAR_LIMIT}`;
    fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, signal: controller.signal })
      .then(async (response) => {
        const body = await response.json();
        if (!response.ok) throw new Error(body?.error ?? `HTTP ${response.status}`);
        return body.bars as StoredBar[];
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
  }, [instrument, barInterval, apiUrl, token, feed]);

  return (
    <section className="detail" aria-label={`${instrument} chart`}>
      <header className="detail-head">
        <h2>{instrument}</h2>
        <div role="group" aria-label="Bar interval" className="intervals">
          {INTERVALS.map((choice) => (
            <button key={choice} type="button" aria-pressed={barInterval === choice} onClick={() => setBarInterval(choice)}>
              {choice}
            </button>
          ))}
        </div>
        <span className="legend"><span className="swatch vwap" aria-hidden="true" /> VWAP · times in UTC</span>
      </header>
      {error && <p className="error" role="alert">{error}</p>}
      <div ref={container} className="chart" data-testid="chart" data-instrument={instrument}
        data-interval={barInterval} data-bars={bars} />
    </section>
  );
}
