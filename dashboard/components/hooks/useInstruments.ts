"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import { getInstruments } from "@/lib/api";
import { indexDetails, nextRefreshMs, type DetailsIndex } from "@/lib/instruments";
import type { InstrumentDetails } from "@/lib/types";

interface Options {
  /** What the server rendered the page with (its first paint used the same details). */
  initialInstruments: string[];
  initialDetails: InstrumentDetails[];
  apiUrl: string;
  token: string | null;
  /** Told every list of instruments that arrives (the watchlist fills itself from the first). */
  onListed?: (instruments: string[]) => void;
}

interface Listing {
  instruments: string[];
  details: DetailsIndex;
}

/** The instruments there are and their details, asked again just after a market's status is due
 * to change (`status_until_ns`) and once a minute anyway; at once on mount when the server
 * rendered without them (dashboard_api was down). `detailOf` reads the latest details from
 * callbacks that outlive a render (alert toasts); render code reads `details`. */
export function useInstruments({ initialInstruments, initialDetails, apiUrl, token, onListed }: Options) {
  const [listing, setListing] = useState<Listing>(() => ({ instruments: initialInstruments, details: indexDetails(initialDetails) }));
  // Bumped after every answer or failure: each one schedules the next ask.
  const [round, setRound] = useState(0);
  const latest = useRef(listing.details);
  const listed = useRef(onListed);
  const startedEmpty = useRef(initialInstruments.length === 0);

  useEffect(() => {
    latest.current = listing.details;
    listed.current = onListed;
  });

  useEffect(() => {
    const controller = new AbortController();
    const delay = round === 0 && startedEmpty.current ? 0 : nextRefreshMs(latest.current.values(), Date.now());
    const timer = setTimeout(() => {
      getInstruments(apiUrl, { token, signal: controller.signal })
        .then(({ ok, body }) => {
          if (!ok || !body || !Array.isArray(body.instruments)) return;
          const instruments = body.instruments.slice().sort();
          setListing({ instruments, details: indexDetails(body.details) });
          listed.current?.(instruments);
        })
        .catch(() => undefined)
        .finally(() => {
          if (!controller.signal.aborted) setRound((n) => n + 1);
        });
    }, delay);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [round, apiUrl, token]);

  const detailOf = useCallback((symbol: string) => latest.current.get(symbol), []);

  return { available: listing.instruments, details: listing.details, detailOf };
}
