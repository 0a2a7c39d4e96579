"use client";

import { milliseconds } from "@/lib/format";
import type { FeedView } from "@/lib/feed";

const LABEL: Record<FeedView["status"], string> = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  resyncing: "Resyncing",
  unauthorized: "Unauthorized",
};

/** Feed health: what the connection is doing, how much flows and how fresh it is. */
export default function Health({ view }: { view: FeedView }) {
  return (
    <section
      className="health"
      aria-label="Feed health"
      data-testid="health"
      data-status={view.status}
      data-gaps={view.gaps}
      data-resumed={view.resumed}
      data-reconnects={view.reconnects}
    >
      <span className={`status status-${view.status}`} role="status" data-testid="status">
        <span className="dot" aria-hidden="true" />
        {LABEL[view.status]}
      </span>
      <span className="figure" title="Updates received per second (last 5 s)">
        <b data-testid="rate">{view.updatesPerSecond.toFixed(0)}</b> upd/s
      </span>
      <span className="figure" title="End-to-end latency, ingest → this browser (last 2048 updates)">
        p50 <b data-testid="p50">{milliseconds(view.p50Ms)}</b>
      </span>
      <span className="figure" title="End-to-end latency, ingest → this browser (last 2048 updates)">
        p99 <b data-testid="p99">{milliseconds(view.p99Ms)}</b>
      </span>
      <span className="figure" title="Versions missed without the server saying so (should stay 0)">
        {"gaps "}
        <b data-testid="gaps" className={view.gaps ? "bad" : ""}>
          {view.gaps}
        </b>
      </span>
      <span className="notice" data-testid="notice" aria-live="polite">
        {view.notice}
      </span>
    </section>
  );
}
