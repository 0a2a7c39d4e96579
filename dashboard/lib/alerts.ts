// The user's alerts as the page shows them, built from the server's alert events. Pure.
// Events can arrive out of order across a reconnect (a list reply racing a live event), so a
// terminal status is never overwritten and an older event never replaces a newer one.

import { isMultipleOf } from "./decimal";
import { price } from "./format";
import { compareNanos } from "./nanos";
import type { Alert, AlertEvent, AlertStatus, Decimal, Nanos } from "./types";

export interface AlertEntry {
  alert: Alert;
  status: AlertStatus | "pending";
  triggerPrice: Decimal;
  reason: string;
  eventNs: Nanos;
}

export type AlertsAction =
  | { kind: "event"; event: Omit<AlertEvent, "type"> }
  | { kind: "list"; events: Omit<AlertEvent, "type">[] }
  | { kind: "pending"; alert: Alert };

const TERMINAL = new Set<AlertEntry["status"]>(["triggered", "cancelled", "rejected"]);
export const MAX_SHOWN_ALERTS = 200;

function merge(entries: Map<string, AlertEntry>, event: Omit<AlertEvent, "type">): void {
  const held = entries.get(event.alert.alert_id);
  if (held && TERMINAL.has(held.status)) return;
  if (held && held.status !== "pending" && compareNanos(held.eventNs, event.event_ns) > 0) return;
  entries.set(event.alert.alert_id, {
    alert: event.alert,
    status: event.status,
    triggerPrice: event.trigger_price,
    reason: event.reason,
    eventNs: event.event_ns,
  });
}

export function alertsReducer(state: Map<string, AlertEntry>, action: AlertsAction): Map<string, AlertEntry> {
  const next = new Map(state);
  if (action.kind === "event") merge(next, action.event);
  else if (action.kind === "list") for (const event of action.events) merge(next, event);
  else if (!next.has(action.alert.alert_id)) {
    next.set(action.alert.alert_id, { alert: action.alert, status: "pending", triggerPrice: null, reason: "", eventNs: "0" });
  }
  return next;
}

/** Active (and pending) first, then the most recent; at most MAX_SHOWN_ALERTS. */
export function shownAlerts(entries: Map<string, AlertEntry>): AlertEntry[] {
  const open = (entry: AlertEntry) => (entry.status === "active" || entry.status === "pending" ? 0 : 1);
  return [...entries.values()]
    .sort((a, b) => open(a) - open(b) || compareNanos(b.alert.created_ns, a.alert.created_ns))
    .slice(0, MAX_SHOWN_ALERTS);
}

/** A price as the server accepts it: a positive decimal number. */
export function validPrice(text: string): boolean {
  return /^\d{1,12}(\.\d{1,9})?$/.test(text.trim()) && Number(text) > 0;
}

/** What is wrong with an alert price typed for an instrument of tick `tickSize` (unknown: any
 * step), or null when nothing is: a level off the tick grid can never trade exactly. */
export function priceProblem(text: string, tickSize?: string): string | null {
  if (!validPrice(text)) return "enter a positive price, e.g. 101.25";
  if (tickSize && isMultipleOf(text.trim(), tickSize) === false) return `the price must be a multiple of the tick size, ${tickSize}`;
  return null;
}

/** A notification: what a toast shows (components/Toasts.tsx). */
export interface AlertNotice {
  id: string;
  tone: "good" | "bad";
  text: string;
}

/** The notice an alert event deserves: triggered and rejected ones are news, the rest are not.
 * Prices read as in the grid, at the instrument's `decimals` (the server sends 211.4 for 211.40). */
export function describeAlert(event: Omit<AlertEvent, "type">, decimals?: number): AlertNotice | null {
  const { alert } = event;
  const what = `${alert.instrument} ${alert.direction === "above" ? "≥" : "≤"} ${price(alert.price, decimals)}`;
  if (event.status === "triggered") {
    const traded = event.trigger_price == null ? "?" : price(event.trigger_price, decimals);
    return { id: alert.alert_id, tone: "good", text: `Alert triggered: ${what} (traded ${traded})` };
  }
  if (event.status === "rejected") return { id: alert.alert_id, tone: "bad", text: `Alert rejected: ${what}: ${event.reason}` };
  return null;
}
