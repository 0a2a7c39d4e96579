import { describe, expect, it } from "vitest";

import { COLUMNS, FROM_OPEN_TITLE, cellText, cellTitle, changeFromOpen, changeTone, nextSort, visibleRows, type ColumnKey } from "./grid";
import type { InstrumentState } from "./types";

const states: Record<string, Partial<InstrumentState>> = {
  AAPL: { last_price: "230.1", change_pct: 0.5 },
  MSFT: { last_price: "421.2", change_pct: -0.2 },
  NVDA: { last_price: null, change_pct: null },
};
const lookup = (name: string) => states[name] as InstrumentState | undefined;

describe("visibleRows", () => {
  it("filters by text, case-insensitively", () => {
    expect(visibleRows(["AAPL", "MSFT", "NVDA"], lookup, "ms", { key: "instrument", descending: false })).toEqual(["MSFT"]);
  });

  it("sorts numerically (not as text) with unknown values last", () => {
    const rows = visibleRows(["NVDA", "AAPL", "MSFT"], lookup, "", { key: "last_price", descending: true });
    expect(rows).toEqual(["MSFT", "AAPL", "NVDA"]);
    const ascending = visibleRows(["NVDA", "AAPL", "MSFT"], lookup, "", { key: "change_pct", descending: false });
    expect(ascending).toEqual(["MSFT", "AAPL", "NVDA"]);
  });
});

describe("nextSort", () => {
  it("flips the order on the same column, starts numbers descending", () => {
    expect(nextSort({ key: "instrument", descending: false }, "instrument")).toEqual({ key: "instrument", descending: true });
    expect(nextSort({ key: "instrument", descending: false }, "last_price")).toEqual({ key: "last_price", descending: true });
  });
});

describe("cellText", () => {
  const state = {
    instrument: "AAPL",
    last_price: "229.8",
    bid_price: "229.79",
    ask_price: "230",
    spread: "0.21",
    change: "0",
    change_pct: 0,
    previous_close: "229.8",
    vwap: "229.81234",
    session_volume: "1234567",
    session_open: "228",
    session_high: "230.5",
    session_low: "227.25",
  } as unknown as InstrumentState;
  const column = (key: ColumnKey) => COLUMNS.find((c) => c.key === key)!;
  const texts = (decimals: number | undefined) => Object.fromEntries(COLUMNS.map((c) => [c.key, cellText(state, c, decimals)]));

  it("shows every price at the instrument's decimals, derived ones one finer", () => {
    expect(texts(2)).toEqual({
      instrument: "AAPL",
      last_price: "229.80",
      bid_price: "229.79",
      ask_price: "230.00",
      spread: "0.21",
      change: "+0.00",
      change_pct: "+0.00%",
      previous_close: "229.80",
      vwap: "229.812",
      session_volume: "1.23M",
      session_open: "228.00",
      session_high: "230.50",
      session_low: "227.25",
    });
  });

  it("shows prices as they came without details", () => {
    expect(cellText(state, column("last_price"), undefined)).toBe("229.8");
    expect(cellText(state, column("change"), undefined)).toBe("+0");
    expect(cellText(state, column("vwap"), undefined)).toBe("229.8123");
  });

  it("shows a dash for what an older server does not send", () => {
    const older = { ...state, previous_close: undefined } as InstrumentState;
    expect(cellText(older, column("previous_close"), 2)).toBe("—");
  });
});

describe("changeTone and changeFromOpen", () => {
  const at = (change: string | null, basis?: "previous_close" | "session_open") =>
    ({ change, change_basis: basis }) as unknown as InstrumentState;

  it("colours by the change as shown", () => {
    expect(changeTone(at("1.2"), 2)).toBe("up");
    expect(changeTone(at("-0.01"), 2)).toBe("down");
    expect(changeTone(at("0"), 2)).toBe("");
    expect(changeTone(at("-0.001"), 2)).toBe(""); // shown as +0.00
    expect(changeTone(at(null), 2)).toBe("");
  });

  it("marks a change from this session's open only when the server says so", () => {
    expect(changeFromOpen(at("1", "session_open"))).toBe(true);
    expect(changeFromOpen(at("1", "previous_close"))).toBe(false);
    expect(changeFromOpen(at("1"))).toBe(false);
    expect(FROM_OPEN_TITLE).toContain("open");
  });
});

describe("cellTitle", () => {
  const column = (key: ColumnKey) => COLUMNS.find((c) => c.key === key)!;

  it("says why a change is marked, and gives the volume in full", () => {
    const state = { change: "1", change_basis: "session_open", session_volume: "1234567" } as unknown as InstrumentState;
    expect(cellTitle(state, column("change"))).toBe(FROM_OPEN_TITLE);
    expect(cellTitle(state, column("change_pct"))).toBe(FROM_OPEN_TITLE);
    expect(cellTitle(state, column("session_volume"))).toBe("1,234,567");
    expect(cellTitle({ ...state, change_basis: "previous_close" }, column("change"))).toBeUndefined();
    expect(cellTitle(state, column("last_price"))).toBeUndefined();
  });
});
