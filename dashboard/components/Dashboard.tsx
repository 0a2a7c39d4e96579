"use client";

import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";

import { visibleRows, type Sort } from "@/lib/grid";
import { optionLabel, resolveInstrument, searchInstruments } from "@/lib/instruments";
import type { InstrumentDetails, InstrumentState } from "@/lib/types";

import AlertsPanel from "./AlertsPanel";
import Health from "./Health";
import { useAlerts } from "./hooks/useAlerts";
import { useFeed } from "./hooks/useFeed";
import { useFeedTick } from "./hooks/useFeedTick";
import { useInstruments } from "./hooks/useInstruments";
import { useSlashFocus } from "./hooks/useSlashFocus";
import { useToasts } from "./hooks/useToasts";
import { useWatchlist } from "./hooks/useWatchlist";
import PriceChart from "./PriceChart";
import Toasts from "./Toasts";
import Watchlist from "./Watchlist";

interface Props {
  initialStates: InstrumentState[];
  available: string[];
  initialDetails: InstrumentDetails[];
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
  // The watchlist fills itself from the first list of instruments after an empty first render;
  // it is made after the feed, which needs the alerts, which need the details: hence this ref.
  const fill = useRef<(instruments: string[]) => void>(() => undefined);
  const { available, details, detailOf } = useInstruments({
    initialInstruments: props.available,
    initialDetails: props.initialDetails,
    apiUrl: props.apiUrl,
    token: props.token,
    onListed: (instruments) => fill.current(instruments),
  });
  const { alerts, onAlert, onAlertList, onPending } = useAlerts(notify, detailOf);
  const feed = useFeed({
    websocketUrl: props.websocketUrl,
    token: props.token,
    instruments: props.initialWatchlist,
    initial: props.initialStates,
    onAlert,
    onAlertList,
  });
  useFeedTick(feed);
  const { watchlist, selected, setSelected, add, remove, onListed } = useWatchlist({
    feed,
    initialWatchlist: props.initialWatchlist,
    watchlistChosen: props.watchlistChosen,
  });
  useEffect(() => {
    fill.current = onListed;
  }, [onListed]);
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<Sort>({ key: "instrument", descending: false });
  const [adding, setAdding] = useState("");
  const filterInput = useRef<HTMLInputElement>(null);
  // "/" focuses the filter; Escape (in it) clears it.
  useSlashFocus(filterInput);

  function addInstrument(event: FormEvent) {
    event.preventDefault();
    if (add(resolveInstrument(adding, available, details))) setAdding("");
  }

  const view = feed.view();
  const rows = visibleRows(watchlist, (name) => feed.book.get(name), filter, sort);
  // Offered while typing: by symbol or by name, "AAPL — Apple Inc." (picked, the box holds the
  // label; resolveInstrument takes the symbol back out of it).
  const suggestions = useMemo(
    () =>
      searchInstruments(
        available.filter((name) => !watchlist.includes(name)),
        details,
        adding,
      ),
    [available, watchlist, details, adding],
  );

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
                placeholder="Add: symbol or name"
                aria-label="Add instrument"
                maxLength={160}
                autoComplete="off"
              />
              <datalist id="known-instruments">
                {suggestions.map((name) => (
                  <option key={name} value={optionLabel(name, details.get(name))} />
                ))}
              </datalist>
              <button type="submit">Add</button>
            </form>
          </div>
          <Watchlist
            book={feed.book}
            details={details}
            rows={rows}
            selected={selected}
            sort={sort}
            onSort={setSort}
            onSelect={setSelected}
            onRemove={remove}
          />
        </section>
        <aside className="side">
          {selected && (
            <PriceChart instrument={selected} detail={details.get(selected)} feed={feed} apiUrl={props.apiUrl} token={props.token} />
          )}
          {/* Keyed by the selection: the form follows the instrument picked in the grid. */}
          <AlertsPanel
            key={selected ?? ""}
            instruments={watchlist}
            defaultInstrument={selected}
            alerts={alerts}
            userId={view.userId}
            detailOf={(name) => details.get(name)}
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
