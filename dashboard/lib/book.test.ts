import { describe, expect, it } from "vitest";

import { Book } from "./book";
import type { InstrumentState, Snapshot } from "./types";

function state(instrument: string, version: number, last = "100"): InstrumentState {
  return { instrument, version, last_price: last, times: { ingest_ns: "0" } } as unknown as InstrumentState;
}

function snapshot(partial: Partial<Snapshot>): Snapshot {
  return { type: "snapshot", reason: "subscribe", states: [], missing: [], resumed: {}, gaps: [], ...partial };
}

describe("Book", () => {
  it("applies consecutive versions and remembers the previous state", () => {
    const book = new Book([state("AAPL", 4, "100")]);
    expect(book.applyUpdate(state("AAPL", 5, "101"))).toBe("applied");
    expect(book.get("AAPL")?.version).toBe(5);
    expect(book.previous("AAPL")?.last_price).toBe("100");
    expect(book.gaps).toBe(0);
  });

  it("ignores what it already holds", () => {
    const book = new Book([state("AAPL", 4)]);
    expect(book.applyUpdate(state("AAPL", 4))).toBe("stale");
    expect(book.applyUpdate(state("AAPL", 2))).toBe("stale");
    expect(book.get("AAPL")?.version).toBe(4);
  });

  it("counts versions skipped without notice as gaps", () => {
    const book = new Book([state("AAPL", 4)]);
    expect(book.applyUpdate(state("AAPL", 8))).toBe("gap");
    expect(book.gaps).toBe(3);
  });

  it("accepts a jump the server announced with conflated, once", () => {
    const book = new Book([state("AAPL", 4)]);
    book.markConflated(["AAPL"]);
    expect(book.applyUpdate(state("AAPL", 9))).toBe("applied");
    expect(book.applyUpdate(state("AAPL", 11))).toBe("gap");
    expect(book.gaps).toBe(1);
  });

  it("asks to resume from the versions it holds, and counts what the server replays", () => {
    const book = new Book([state("AAPL", 4), state("MSFT", 9)]);
    expect(book.since(["AAPL", "MSFT", "NVDA"])).toEqual({ AAPL: 4, MSFT: 9 });
    book.applySnapshot(snapshot({ resumed: { AAPL: { from: 5, to: 7 }, MSFT: { from: 10, to: 9 } } }));
    expect(book.resumed).toBe(3);
  });

  it("takes a snapshot state unless it holds a newer one", () => {
    const book = new Book([state("AAPL", 4)]);
    book.applySnapshot(snapshot({ states: [state("AAPL", 3), state("MSFT", 1)] }));
    expect(book.get("AAPL")?.version).toBe(4);
    expect(book.get("MSFT")?.version).toBe(1);
  });

  it("starts a missing instrument at version 1 without a gap", () => {
    const book = new Book();
    expect(book.applyUpdate(state("NEW", 1))).toBe("applied");
    expect(book.gaps).toBe(0);
  });
});
