"use client";

import { useEffect, useState } from "react";

import { Feed } from "@/lib/feed";
import type { AlertEvent, InstrumentState } from "@/lib/types";

interface Options {
  websocketUrl: string;
  token: string | null;
  instruments: string[];
  initial: InstrumentState[];
  onAlert: (event: AlertEvent) => void;
  onAlertList: (events: Omit<AlertEvent, "type">[]) => void;
}

/** The page's one live connection: made once (with the options of the first render: pass
 * stable callbacks), started on mount, stopped (socket closed, timers cleared) on unmount. */
export function useFeed(options: Options): Feed {
  const [feed] = useState(
    () =>
      new Feed({
        url: options.websocketUrl,
        token: options.token,
        instruments: options.instruments,
        initial: options.initial,
        onAlert: options.onAlert,
        onAlertList: options.onAlertList,
      }),
  );
  useEffect(() => {
    feed.start();
    return () => feed.stop();
  }, [feed]);
  return feed;
}
