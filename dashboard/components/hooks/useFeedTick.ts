"use client";

import { useEffect, useState } from "react";

import type { Feed } from "@/lib/feed";

/** A number that changes at most once per animation frame while the feed has news, and once a
 * second regardless (so rates and latencies age): updates at 1000/s cost 60 renders/s, not 1000. */
export function useFeedTick(feed: Feed): number {
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let frame = 0;
    const unsubscribe = feed.subscribe(() => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setTick((n) => n + 1);
      });
    });
    const timer = setInterval(() => setTick((n) => n + 1), 1000);
    return () => {
      unsubscribe();
      cancelAnimationFrame(frame);
      clearInterval(timer);
    };
  }, [feed]);
  return tick;
}
