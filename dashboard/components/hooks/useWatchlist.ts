"use client";

import { useCallback, useRef, useState } from "react";

import type { Feed } from "@/lib/feed";
import { MAX_WATCHLIST, isInstrumentName, saveWatchlist } from "@/lib/watchlist";

interface Options {
  feed: Feed;
  initialWatchlist: string[];
  /** The user chose the rows (cookie): an empty list is then their choice, not a failed load. */
  watchlistChosen: boolean;
}

/** The rows on the page: kept in the cookie and in the feed's subscriptions, with the selected
 * one (whose chart is shown) always among them. */
export function useWatchlist({ feed, initialWatchlist, watchlistChosen }: Options) {
  const [watchlist, setWatchlist] = useState(initialWatchlist);
  const [selected, setSelected] = useState<string | null>(initialWatchlist[0] ?? null);
  // An empty first render (dashboard_api was down) fills itself from the first list of
  // instruments that arrives, unless the user has chosen rows by then.
  const awaitingFill = useRef(!watchlistChosen && initialWatchlist.length === 0);

  const change = useCallback(
    (next: string[]) => {
      awaitingFill.current = false;
      setWatchlist(next);
      saveWatchlist(next);
      feed.setInstruments(next);
      setSelected((current) => (current && next.includes(current) ? current : (next[0] ?? null)));
    },
    [feed],
  );

  /** A list of instruments has arrived (see useInstruments). */
  const onListed = useCallback(
    (instruments: string[]) => {
      if (awaitingFill.current && instruments.length) change(instruments.slice(0, 50));
    },
    [change],
  );

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

  return { watchlist, selected, setSelected, add, remove, onListed };
}
