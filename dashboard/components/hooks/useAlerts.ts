"use client";

import { useCallback, useReducer } from "react";

import { alertsReducer } from "@/lib/alerts";
import type { Alert, AlertEvent } from "@/lib/types";

import type { Toast } from "../Toasts";

/** The toast an alert event deserves: triggered and rejected ones are news, the rest are not. */
export function describeAlert(event: Omit<AlertEvent, "type">): Toast | null {
  const { alert } = event;
  const what = `${alert.instrument} ${alert.direction === "above" ? "≥" : "≤"} ${alert.price}`;
  if (event.status === "triggered")
    return { id: alert.alert_id, tone: "good", text: `Alert triggered: ${what} (traded ${event.trigger_price ?? "?"})` };
  if (event.status === "rejected") return { id: alert.alert_id, tone: "bad", text: `Alert rejected: ${what}: ${event.reason}` };
  return null;
}

/** The user's alerts, from the feed's alert events and list replies, and the ones just sent. */
export function useAlerts(notify: (toast: Toast) => void) {
  const [alerts, dispatch] = useReducer(alertsReducer, new Map());
  const onAlert = useCallback(
    (event: AlertEvent) => {
      dispatch({ kind: "event", event });
      const toast = describeAlert(event);
      if (toast) notify(toast);
    },
    [notify],
  );
  const onAlertList = useCallback((events: Omit<AlertEvent, "type">[]) => dispatch({ kind: "list", events }), []);
  const onPending = useCallback((alert: Alert) => dispatch({ kind: "pending", alert }), []);
  return { alerts, onAlert, onAlertList, onPending };
}
