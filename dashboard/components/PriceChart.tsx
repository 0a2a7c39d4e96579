"use client";

import { useRef, useState } from "react";

import { INTERVALS, type Interval } from "@/lib/bars";
import type { Feed } from "@/lib/feed";
import { decimalsOf, tickSizeOf } from "@/lib/instruments";
import type { InstrumentDetails } from "@/lib/types";

import { useChartData, useChartFormat, useChartSeries } from "./hooks/usePriceChart";

interface Props {
  instrument: string;
  /** Its details when the master has them: the price axis then reads at its decimals. */
  detail?: InstrumentDetails;
  feed: Feed;
  apiUrl: string;
  token: string | null;
}

/** Candles of 1 s or 1 min from /api/bars, the forming bar from the live feed, VWAP over them. */
export default function PriceChart({ instrument, detail, feed, apiUrl, token }: Props) {
  const container = useRef<HTMLDivElement>(null);
  const [barInterval, setBarInterval] = useState<Interval>("1s");
  const series = useChartSeries(container);
  useChartFormat(series, decimalsOf(detail), tickSizeOf(detail));
  const { bars, error } = useChartData({ series, instrument, interval: barInterval, feed, apiUrl, token });

  return (
    <section className="detail" aria-label={`${instrument} chart`}>
      <header className="detail-head">
        <h2>
          {instrument}
          {detail?.name && <span className="detail-name">{detail.name}</span>}
        </h2>
        <div role="group" aria-label="Bar interval" className="intervals">
          {INTERVALS.map((choice) => (
            <button key={choice} type="button" aria-pressed={barInterval === choice} onClick={() => setBarInterval(choice)}>
              {choice}
            </button>
          ))}
        </div>
        <span className="legend">
          <span className="swatch vwap" aria-hidden="true" /> VWAP · times in UTC
        </span>
      </header>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div
        ref={container}
        className="chart"
        data-testid="chart"
        data-instrument={instrument}
        data-interval={barInterval}
        data-bars={bars}
      />
    </section>
  );
}
