import { describe, expect, it } from "vitest";

import { alertsReducer, describeAlert, priceProblem, shownAlerts, validPrice } from "./alerts";
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

describe("priceProblem", () => {
  it("wants a positive price on the instrument's tick grid", () => {
    expect(priceProblem("5012.25", "0.25")).toBeNull();
    expect(priceProblem("5012.30", "0.25")).toContain("tick size, 0.25");
    expect(priceProblem(" 229.8 ", "0.01")).toBeNull();
    expect(priceProblem("229.805", "0.01")).toContain("0.01");
    expect(priceProblem("0", "0.01")).toContain("positive");
  });

  it("takes any step when the tick is unknown", () => {
    expect(priceProblem("229.805")).toBeNull();
  });
});

describe("describeAlert", () => {
  it("shows the prices at the instrument's decimals", () => {
    const triggered = { ...event("triggered", "20"), alert: { ...alert, price: "211.4" }, trigger_price: "211" };
    expect(describeAlert(triggered, 2)?.text).toBe("Alert triggered: AAPL ≥ 211.40 (traded 211.00)");
    expect(describeAlert(triggered)?.text).toBe("Alert triggered: AAPL ≥ 211.4 (traded 211)");
  });

  it("tells rejected ones, and nothing of the others", () => {
    const rejected = { ...event("rejected", "5"), reason: "unknown instrument" };
    expect(describeAlert(rejected, 2)).toEqual({ id: "a1", tone: "bad", text: "Alert rejected: AAPL ≥ 101.00: unknown instrument" });
    expect(describeAlert(event("active", "5"), 2)).toBeNull();
  });
});
