"use client";

import { useMemo, useRef, useState, type FormEvent } from "react";

import { visibleRows, type Sort } from "@/lib/grid";
import type { InstrumentState } from "@/lib/types";

import AlertsPanel from "./AlertsPanel";
import Health from "./Health";
import { useAlerts } from "./hooks/useAlerts";
import { useFeed } from "./hooks/useFeed";
import { useFeedTick } from "./hooks/useFeedTick";
import { useSlashFocus } from "./hooks/useSlashFocus";
import { useToasts } from "./hooks/useToasts";
import { useWatchlist } from "./hooks/useWatchlist";
import PriceChart from "./PriceChart";
import Toasts from "./Toasts";
import Watchlist from "./Watchlist";

interface Props {
  initialStates: InstrumentState[];
  available: string[];
  initialWatchlist: string[];
  watchlistChosen: boolean;
  apiUrl: string;
  websocketUrl: string;
  token: string | null;
  canLogOut: boolean;
  serverNotice: string | null;
}

/** The shell: the state lives in hooks (components/hooks/), this lays the page out. */
export default function Dashboard(props: Props) {
  const { toasts, notify, dismiss } = useToasts();
  const { alerts, onAlert, onAlertList, onPending } = useAlerts(notify);
  const feed = useFeed({
    websocketUrl: props.websocketUrl,
    token: props.token,
    instruments: props.initialWatchlist,
    initial: props.initialStates,
    onAlert,
    onAlertList,
  });
  useFeedTick(feed);
  const { watchlist, selected, setSelected, available, add, remove } = useWatchlist({
    feed,
    initialWatchlist: props.initialWatchlist,
    available: props.available,
    watchlistChosen: props.watchlistChosen,
    apiUrl: props.apiUrl,
    token: props.token,
  });
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<Sort>({ key: "instrument", descending: false });
  const [adding, setAdding] = useState("");
  const filterInput = useRef<HTMLInputElement>(null);
  // "/" focuses the filter; Escape (in it) clears it.
  useSlashFocus(filterInput);

  function addInstrument(event: FormEvent) {
    event.preventDefault();
    if (add(adding.trim())) setAdding("");
  }

  const view = feed.view();
  const rows = visibleRows(watchlist, (name) => feed.book.get(name), filter, sort);
  const knownNames = useMemo(() => available.filter((name) => !watchlist.includes(name)), [available, watchlist]);

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">tapewire</span>
        <Health view={view} />
        <span className="user" title="Signed in as">
          {view.userId || "…"}
        </span>
        {props.canLogOut && (
          <form method="post" action="/session">
            <input type="hidden" name="action" value="logout" />
            <button type="submit" className="link">
              Log out
            </button>
          </form>
        )}
      </header>
      {props.serverNotice && (
        <p className="banner" role="alert">
          First load without prices: {props.serverNotice}. Retrying live…
        </p>
      )}
      <main className="layout">
        <section className="watch" aria-label="Watchlist">
          <div className="toolbar">
            <input
              ref={filterInput}
              type="search"
              value={filter}
              onChange={(e) => setFilter(e.target.value)}
              placeholder="Filter ( / )"
              aria-label="Filter instruments"
              maxLength={32}
              onKeyDown={(e) => {
                if (e.key === "Escape") setFilter("");
              }}
            />
            <form onSubmit={addInstrument} className="add">
              <input
                list="known-instruments"
                value={adding}
                onChange={(e) => setAdding(e.target.value)}
                placeholder="Add instrument"
                aria-label="Add instrument"
                maxLength={32}
                autoComplete="off"
              />
              <datalist id="known-instruments">
                {knownNames.map((name) => (
                  <option key={name} value={name} />
                ))}
              </datalist>
              <button type="submit">Add</button>
            </form>
          </div>
          <Watchlist
            book={feed.book}
            rows={rows}
            selected={selected}
            sort={sort}
            onSort={setSort}
            onSelect={setSelected}
            onRemove={remove}
          />
        </section>
        <aside className="side">
          {selected && <PriceChart instrument={selected} feed={feed} apiUrl={props.apiUrl} token={props.token} />}
          {/* Keyed by the selection: the form follows the instrument picked in the grid. */}
          <AlertsPanel
            key={selected ?? ""}
            instruments={watchlist}
            defaultInstrument={selected}
            alerts={alerts}
            userId={view.userId}
            lastPrice={(name) => feed.book.get(name)?.last_price ?? null}
            create={(i, d, p) => feed.createAlert(i, d, p)}
            cancel={(id) => feed.cancelAlert(id)}
            onPending={onPending}
          />
        </aside>
      </main>
      <Toasts toasts={toasts} dismiss={dismiss} />
      <footer className="footer">Prices as of the server render, then live over {new URL(props.websocketUrl).host}.</footer>
    </div>
  );
}
