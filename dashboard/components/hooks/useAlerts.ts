"use client";

import { useCallback, useReducer } from "react";

import { alertsReducer, describeAlert } from "@/lib/alerts";
import { decimalsOf } from "@/lib/instruments";
import type { Alert, AlertEvent, InstrumentDetails } from "@/lib/types";

import type { Toast } from "../Toasts";

/** The user's alerts, from the feed's alert events and list replies, and the ones just sent.
 * `detailOf` must be stable and read the latest details: the feed keeps the first `onAlert`. */
export function useAlerts(notify: (toast: Toast) => void, detailOf: (symbol: string) => InstrumentDetails | undefined) {
  const [alerts, dispatch] = useReducer(alertsReducer, new Map());
  const onAlert = useCallback(
    (event: AlertEvent) => {
      dispatch({ kind: "event", event });
      const toast = describeAlert(event, decimalsOf(detailOf(event.alert.instrument)));
      if (toast) notify(toast);
    },
    [notify, detailOf],
  );
  const onAlertList = useCallback((events: Omit<AlertEvent, "type">[]) => dispatch({ kind: "list", events }), []);
  const onPending = useCallback((alert: Alert) => dispatch({ kind: "pending", alert }), []);
  return { alerts, onAlert, onAlertList, onPending };
}
