"use client";

import { useCallback, useEffect, useMemo, useReducer, useRef, useState, type FormEvent } from "react";

import { alertsReducer } from "@/lib/alerts";
import { Feed } from "@/lib/feed";
import { visibleRows, type Sort } from "@/lib/grid";
import type { AlertEvent, InstrumentState } from "@/lib/types";
import { MAX_WATCHLIST, isInstrumentName, saveWatchlist } from "@/lib/watchlist";

import AlertsPanel from "./AlertsPanel";
import Health from "./Health";
import PriceChart from "./PriceChart";
import Toasts, { type Toast } from "./Toasts";
import { useFeedTick } from "./useFeed";
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

const TOAST_MS = 15_000;
const MAX_TOASTS = 5;

function describe(event: Omit<AlertEvent, "type">): Toast | null {
  const { alert } = event;
  const what = `${alert.instrument} ${alert.direction === "above" ? "≥" : "≤"} ${alert.price}`;
  if (event.status === "triggered") return { id: alert.alert_id, tone: "good", text: `Alert triggered: ${what} (traded ${event.trigger_price ?? "?"})` };
  if (event.status === "rejected") return { id: alert.alert_id, tone: "bad", text: `Alert rejected: ${what}: ${event.reason}` };
  return null;
}

export default function Dashboard(props: Props) {
  const [alerts, dispatchAlerts] = useReducer(alertsReducer, new Map());
  const [toasts, setToasts] = useState<Toast[]>([]);
  const notify = useCallback((toast: Toast) => {
    setToasts((shown) => [toast, ...shown.filter((t) => t.id !== toast.id)].slice(0, MAX_TOASTS));
    setTimeout(() => setToasts((shown) => shown.filter((t) => t.id !== toast.id)), TOAST_MS);
  }, []);
  const [feed] = useState(
    () =>
      new Feed({
        url: props.websocketUrl,
        token: props.token,
        instruments: props.initialWatchlist,
        initial: props.initialStates,
        onAlert: (event) => {
          dispatchAlerts({ kind: "event", event });
          const toast = describe(event);
          if (toast) notify(toast);
        },
        onAlertList: (events) => dispatchAlerts({ kind: "list", events }),
      }),
  );
  const [watchlist, setWatchlist] = useState(props.initialWatchlist);
  const [selected, setSelected] = useState<string | null>(props.initialWatchlist[0] ?? null);
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<Sort>({ key: "instrument", descending: false });
  const [adding, setAdding] = useState("");
  const [available, setAvailable] = useState(props.available);
  const filterInput = useRef<HTMLInputElement>(null);
  useFeedTick(feed);

  useEffect(() => {
    feed.start();
    return () => feed.stop();
  }, [feed]);

  const changeWatchlist = useCallback(
    (next: string[]) => {
      setWatchlist(next);
      saveWatchlist(next);
      feed.setInstruments(next);
      setSelected((current) => (current && next.includes(current) ? current : next[0] ?? null));
    },
    [feed],
  );

  // An empty first render (dashboard_api was down) fills itself once the instruments are known.
  useEffect(() => {
    if (props.watchlistChosen || watchlist.length > 0) return;
    const controller = new AbortController();
    fetch(`${props.apiUrl}/api/instruments`, {
      headers: props.token ? { Authorization: `Bearer ${props.token}` } : {},
      signal: controller.signal,
    })
      .then((response) => (response.ok ? response.json() : null))
      .then((body: { instruments: string[] } | null) => {
        if (!body) return;
        setAvailable(body.instruments);
        if (body.instruments.length) changeWatchlist(body.instruments.slice(0, 50));
      })
      .catch(() => undefined);
    return () => controller.abort();
    // Once, on mount: later changes go through changeWatchlist.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  // "/" focuses the filter, as in most desk tools; Escape clears it.
  useEffect(() => {
    function onKey(event: KeyboardEvent) {
      const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLSelectElement;
      if (event.key === "/" && !typing) {
        event.preventDefault();
        filterInput.current?.focus();
      }
    }
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  function addInstrument(event: FormEvent) {
    event.preventDefault();
    const name = adding.trim();
    if (!isInstrumentName(name) || watchlist.includes(name) || watchlist.length >= MAX_WATCHLIST) return;
    changeWatchlist([...watchlist, name]);
    setAdding("");
  }

  const view = feed.view();
  const rows = visibleRows(watchlist, (name) => feed.book.get(name), filter, sort);
  const knownNames = useMemo(() => available.filter((name) => !watchlist.includes(name)), [available, watchlist]);

  return (
    <div className="app">
      <header className="topbar">
        <span className="brand">tapewire</span>
        <Health view={view} />
        <span className="user" title="Signed in as">{view.userId || "…"}</span>
        {props.canLogOut && (
          <form method="post" action="/session">
            <input type="hidden" name="action" value="logout" />
            <button type="submit" className="link">Log out</button>
          </form>
        )}
      </header>
      {props.serverNotice && <p className="banner" role="alert">First load without prices: {props.serverNotice}. Retrying live…</p>}
      <main className="layout">
        <section className="watch" aria-label="Watchlist">
          <div className="toolbar">
            <input ref={filterInput} type="search" value={filter} onChange={(e) => setFilter(e.target.value)}
              placeholder="Filter ( / )" aria-label="Filter instruments" maxLength={32}
              onKeyDown={(e) => { if (e.key === "Escape") setFilter(""); }} />
            <form onSubmit={addInstrument} className="add">
              <input list="known-instruments" value={adding} onChange={(e) => setAdding(e.target.value)}
                placeholder="Add instrument" aria-label="Add instrument" maxLength={32} autoComplete="off" />
              <datalist id="known-instruments">
                {knownNames.map((name) => <option key={name} value={name} />)}
              </datalist>
              <button type="submit">Add</button>
            </form>
          </div>
          <Watchlist book={feed.book} rows={rows} selected={selected} sort={sort} onSort={setSort}
            onSelect={setSelected} onRemove={(name) => changeWatchlist(watchlist.filter((n) => n !== name))} />
        </section>
        <aside className="side">
          {selected && <PriceChart instrument={selected} feed={feed} apiUrl={props.apiUrl} token={props.token} />}
          {/* Keyed by the selection: the form follows the instrument picked in the grid. */}
          <AlertsPanel key={selected ?? ""} instruments={watchlist} defaultInstrument={selected} alerts={alerts} userId={view.userId}
            lastPrice={(name) => feed.book.get(name)?.last_price ?? null}
            create={(i, d, p) => feed.createAlert(i, d, p)} cancel={(id) => feed.cancelAlert(id)}
            onPending={(alert) => dispatchAlerts({ kind: "pending", alert })} />
        </aside>
      </main>
      <Toasts toasts={toasts} dismiss={(id) => setToasts((shown) => shown.filter((t) => t.id !== id))} />
      <footer className="footer">
        Prices as of the server render, then live over {new URL(props.websocketUrl).host}.
      </footer>
    </div>
  );
}
