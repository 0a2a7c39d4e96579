"use client";

import { useCallback, useEffect, useState } from "react";

import { getInstruments } from "@/lib/api";
import type { Feed } from "@/lib/feed";
import { MAX_WATCHLIST, isInstrumentName, saveWatchlist } from "@/lib/watchlist";

interface Options {
  feed: Feed;
  initialWatchlist: string[];
  available: string[];
  /** The user chose the rows (cookie): an empty list is then their choice, not a failed load. */
  watchlistChosen: boolean;
  apiUrl: string;
  token: string | null;
}

/** The rows on the page: kept in the cookie and in the feed's subscriptions, with the selected
 * one (whose chart is shown) always among them. */
export function useWatchlist({ feed, initialWatchlist, available: initialAvailable, watchlistChosen, apiUrl, token }: Options) {
  const [watchlist, setWatchlist] = useState(initialWatchlist);
  const [selected, setSelected] = useState<string | null>(initialWatchlist[0] ?? null);
  const [available, setAvailable] = useState(initialAvailable);

  const change = useCallback(
    (next: string[]) => {
      setWatchlist(next);
      saveWatchlist(next);
      feed.setInstruments(next);
      setSelected((current) => (current && next.includes(current) ? current : (next[0] ?? null)));
    },
    [feed],
  );

  // An empty first render (dashboard_api was down) fills itself once the instruments are known.
  useEffect(() => {
    if (watchlistChosen || watchlist.length > 0) return;
    const controller = new AbortController();
    getInstruments(apiUrl, { token, signal: controller.signal })
      .then(({ ok, body }) => {
        if (!ok || !body) return;
        setAvailable(body.instruments);
        if (body.instruments.length) change(body.instruments.slice(0, 50));
      })
      .catch(() => undefined);
    return () => controller.abort();
    // Once, on mount: later changes go through `change`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  /** Add a name typed by the user; false when it is not a name, already there, or one too many. */
  const add = useCallback(
    (name: string): boolean => {
      if (!isInstrumentName(name) || watchlist.includes(name) || watchlist.length >= MAX_WATCHLIST) return false;
      change([...watchlist, name]);
      return true;
    },
    [watchlist, change],
  );

  const remove = useCallback((name: string) => change(watchlist.filter((n) => n !== name)), [watchlist, change]);

  return { watchlist, selected, setSelected, available, add, remove };
}
