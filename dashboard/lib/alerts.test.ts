import { describe, expect, it } from "vitest";

import { alertsReducer, shownAlerts, validPrice } from "./alerts";
import type { Alert, AlertEvent, AlertStatus } from "./types";

const alert: Alert = { alert_id: "a1", user_id: "u", instrument: "AAPL", direction: "above", price: "101", created_ns: "1" };

function event(status: AlertStatus, eventNs: string): Omit<AlertEvent, "type"> {
  return { status, alert, trigger_price: status === "triggered" ? "101.5" : null, trigger_version: 0, reason: "", event_ns: eventNs };
}

describe("alertsReducer", () => {
  it("moves a pending alert forward and never back from a terminal status", () => {
    let state = alertsReducer(new Map(), { kind: "pending", alert });
    expect(state.get("a1")?.status).toBe("pending");
    state = alertsReducer(state, { kind: "event", event: event("active", "10") });
    state = alertsReducer(state, { kind: "event", event: event("triggered", "20") });
    state = alertsReducer(state, { kind: "list", events: [event("active", "10")] });
    expect(state.get("a1")?.status).toBe("triggered");
    expect(state.get("a1")?.triggerPrice).toBe("101.5");
  });

  it("lists open alerts first", () => {
    let state = alertsReducer(new Map(), { kind: "event", event: event("cancelled", "5") });
    const open: Alert = { ...alert, alert_id: "a2", created_ns: "0" };
    state = alertsReducer(state, { kind: "pending", alert: open });
    expect(shownAlerts(state).map((entry) => entry.alert.alert_id)).toEqual(["a2", "a1"]);
  });
});

describe("validPrice", () => {
  it("accepts positive decimals only", () => {
    expect(validPrice("101.25")).toBe(true);
    expect(validPrice("0")).toBe(false);
    expect(validPrice("-1")).toBe(false);
    expect(validPrice("1e5")).toBe(false);
  });
});
