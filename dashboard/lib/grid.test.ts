import { describe, expect, it } from "vitest";

import { nextSort, visibleRows } from "./grid";
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
