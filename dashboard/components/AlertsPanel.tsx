"use client";

import { useState, type FormEvent } from "react";

import { priceProblem, shownAlerts, type AlertEntry } from "@/lib/alerts";
import type { AlertReply } from "@/lib/feed";
import { price as formatPrice } from "@/lib/format";
import { decimalsOf, tickSizeOf } from "@/lib/instruments";
import { nanosFromMs } from "@/lib/nanos";
import type { Alert, AlertDirection, InstrumentDetails } from "@/lib/types";

interface Props {
  instruments: string[];
  defaultInstrument: string | null;
  lastPrice: (instrument: string) => string | null;
  detailOf: (instrument: string) => InstrumentDetails | undefined;
  alerts: Map<string, AlertEntry>;
  userId: string;
  create: (instrument: string, direction: AlertDirection, price: string) => Promise<AlertReply>;
  cancel: (alertId: string) => Promise<AlertReply>;
  onPending: (alert: Alert) => void;
}

/** Create, list and cancel price alerts. The server answers a create at once with an id; the
 * alert shows as pending until the processor's ACTIVE event comes back. */
export default function AlertsPanel(props: Props) {
  const { instruments, defaultInstrument, lastPrice, detailOf, alerts, userId, create, cancel, onPending } = props;
  const [instrument, setInstrument] = useState(defaultInstrument ?? "");
  const [direction, setDirection] = useState<AlertDirection>("above");
  const [price, setPrice] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const chosen = instrument || defaultInstrument || "";
  const tick = tickSizeOf(detailOf(chosen));
  const shown = (name: string, value: string | null) => formatPrice(value, decimalsOf(detailOf(name)));

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!chosen) return setMessage("choose an instrument");
    const problem = priceProblem(price, tick);
    if (problem) return setMessage(problem);
    setBusy(true);
    const reply = await create(chosen, direction, price.trim());
    setBusy(false);
    if (!reply.ok || !reply.alertId) return setMessage(reply.error ?? "refused");
    onPending({
      alert_id: reply.alertId,
      user_id: userId,
      instrument: chosen,
      direction,
      price: price.trim(),
      created_ns: nanosFromMs(Date.now()),
    });
    setMessage(`alert on ${chosen} ${direction} ${shown(chosen, price.trim())} sent`);
    setPrice("");
  }

  async function onCancel(alertId: string) {
    const reply = await cancel(alertId);
    if (!reply.ok) setMessage(reply.error ?? "cancel refused");
  }

  const entries = shownAlerts(alerts);
  return (
    <section className="alerts" aria-label="Price alerts">
      <h2>Alerts</h2>
      {/* Checked here (priceProblem), not by the browser: its message would name neither the
          tick nor the instrument, and the step is there for the arrows (one tick a press). */}
      <form className="alert-form" onSubmit={submit} data-testid="alert-form" noValidate>
        <label>
          <span className="sr-only">Instrument</span>
          <select value={chosen} onChange={(e) => setInstrument(e.target.value)} aria-label="Instrument" name="instrument">
            {instruments.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span className="sr-only">Direction</span>
          <select
            value={direction}
            onChange={(e) => setDirection(e.target.value as AlertDirection)}
            aria-label="Direction"
            name="direction"
          >
            <option value="above">at or above</option>
            <option value="below">at or below</option>
          </select>
        </label>
        <label>
          <span className="sr-only">Price</span>
          <input
            type="number"
            value={price}
            onChange={(e) => setPrice(e.target.value)}
            inputMode="decimal"
            step={tick ?? "any"}
            min={tick ?? 0}
            name="price"
            aria-label="Price"
            title={tick ? `in steps of ${tick}` : undefined}
            placeholder={chosen && lastPrice(chosen) ? shown(chosen, lastPrice(chosen)) : "price"}
            autoComplete="off"
          />
        </label>
        <button type="submit" disabled={busy}>
          Add alert
        </button>
      </form>
      {message && (
        <p className="form-message" role="status">
          {message}
        </p>
      )}
      <ul className="alert-list" data-testid="alert-list">
        {entries.map((entry) => (
          <li
            key={entry.alert.alert_id}
            data-alert-id={entry.alert.alert_id}
            data-status={entry.status}
            className={`alert-${entry.status}`}
          >
            <span className="alert-what">
              {entry.alert.instrument} {entry.alert.direction === "above" ? "≥" : "≤"} {shown(entry.alert.instrument, entry.alert.price)}
            </span>
            <span className="alert-status">
              {entry.status}
              {entry.status === "triggered" && entry.triggerPrice ? ` at ${shown(entry.alert.instrument, entry.triggerPrice)}` : ""}
              {entry.reason ? `: ${entry.reason}` : ""}
            </span>
            {entry.status === "active" && (
              <button
                type="button"
                onClick={() => onCancel(entry.alert.alert_id)}
                aria-label={`Cancel alert ${entry.alert.instrument} ${entry.alert.direction} ${shown(entry.alert.instrument, entry.alert.price)}`}
              >
                Cancel
              </button>
            )}
          </li>
        ))}
        {entries.length === 0 && <li className="empty">No alerts yet.</li>}
      </ul>
    </section>
  );
}
