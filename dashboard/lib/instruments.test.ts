import { describe, expect, it } from "vitest";

import {
  REFRESH_TIMING,
  decimalsOf,
  indexDetails,
  marketStatusLabel,
  marketStatusTitle,
  nextRefreshMs,
  optionLabel,
  resolveInstrument,
  searchInstruments,
  tickSizeOf,
} from "./instruments";
import { parseJson } from "./nanos";
import type { InstrumentDetails } from "./types";

function detail(symbol: string, name: string, extra: Partial<InstrumentDetails> = {}): InstrumentDetails {
  return {
    symbol,
    name,
    asset_class: "equity",
    currency: "USD",
    venue: "XNAS",
    tick_size: "0.01",
    decimals: 2,
    lot_size: "1",
    calendar: { timezone: "America/New_York", hours: "09:30-16:00", days: "Mon-Fri", pre_open: "04:00" },
    market_status: "open",
    status_until_ns: "0",
    ...extra,
  };
}

const details = indexDetails([
  detail("AAPL", "Apple Inc."),
  detail("AMZN", "Amazon.com, Inc."),
  detail("BTC-USD", "Bitcoin / US Dollar", { asset_class: "crypto", lot_size: "0.0001" }),
  detail("ESZ6", "E-mini S&P 500 Dec 2026", { tick_size: "0.25" }),
  detail("EURUSD", "Euro / US Dollar", { tick_size: "0.00001", decimals: 5 }),
  detail("MSFT", "Microsoft Corporation"),
]);
const symbols = ["AAPL", "AMZN", "BTC-USD", "ESZ6", "EURUSD", "MSFT", "NEWCO"];

describe("indexDetails", () => {
  it("indexes by symbol and drops entries without one", () => {
    const index = indexDetails([detail("AAPL", "Apple Inc."), { name: "no symbol" } as unknown as InstrumentDetails]);
    expect([...index.keys()]).toEqual(["AAPL"]);
    expect(indexDetails(undefined).size).toBe(0);
  });

  it("reads status_until_ns from the JSON as exact digits", () => {
    const body = parseJson('{"details":[{"symbol":"AAPL","decimals":2,"status_until_ns":1765000000123456789}]}') as {
      details: InstrumentDetails[];
    };
    expect(indexDetails(body.details).get("AAPL")?.status_until_ns).toBe("1765000000123456789");
  });
});

describe("decimalsOf and tickSizeOf", () => {
  it("give the instrument's, or undefined when unknown or unusable", () => {
    expect(decimalsOf(details.get("EURUSD"))).toBe(5);
    expect(decimalsOf(undefined)).toBeUndefined();
    expect(decimalsOf(detail("X", "x", { decimals: -1 }))).toBeUndefined();
    expect(tickSizeOf(details.get("ESZ6"))).toBe("0.25");
    expect(tickSizeOf(detail("X", "x", { tick_size: "0" }))).toBeUndefined();
    expect(tickSizeOf(undefined)).toBeUndefined();
  });
});

describe("optionLabel", () => {
  it("reads SYMBOL — Name, or the symbol alone", () => {
    expect(optionLabel("AAPL", details.get("AAPL"))).toBe("AAPL — Apple Inc.");
    expect(optionLabel("NEWCO", undefined)).toBe("NEWCO");
    expect(optionLabel("X", detail("X", "  "))).toBe("X");
  });
});

describe("searchInstruments", () => {
  it("finds by symbol or by name, case-insensitively", () => {
    expect(searchInstruments(symbols, details, "aapl")).toEqual(["AAPL"]);
    expect(searchInstruments(symbols, details, "apple")).toEqual(["AAPL"]);
    expect(searchInstruments(symbols, details, "MICRO")).toEqual(["MSFT"]);
    expect(searchInstruments(symbols, details, "newco")).toEqual(["NEWCO"]);
  });

  it("puts symbol matches before name matches, then a word's start before its middle", () => {
    // "eur": EURUSD by symbol; "Euro / US Dollar" is the same one. "us": BTC-USD and EURUSD by
    // symbol, then the names with a word "US…".
    expect(searchInstruments(symbols, details, "eur")).toEqual(["EURUSD"]);
    expect(searchInstruments(symbols, details, "us")).toEqual(["BTC-USD", "EURUSD"]);
    expect(searchInstruments(symbols, details, "dollar")).toEqual(["BTC-USD", "EURUSD"]);
    expect(searchInstruments(symbols, details, "s&p")).toEqual(["ESZ6"]);
  });

  it("matches a picked label, offers everything for an empty query, and stops at the limit", () => {
    expect(searchInstruments(symbols, details, "AAPL — Apple Inc.")).toEqual(["AAPL"]);
    expect(searchInstruments(symbols, details, "  ")).toEqual(symbols);
    expect(searchInstruments(symbols, details, "", 2)).toEqual(["AAPL", "AMZN"]);
    expect(searchInstruments(symbols, details, "zzz")).toEqual([]);
  });
});

describe("resolveInstrument", () => {
  it("takes the symbol out of a picked label", () => {
    expect(resolveInstrument("AAPL — Apple Inc.", symbols, details)).toBe("AAPL");
  });

  it("knows a symbol in any case, and a name that is one instrument's", () => {
    expect(resolveInstrument(" aapl ", symbols, details)).toBe("AAPL");
    expect(resolveInstrument("microsoft corporation", symbols, details)).toBe("MSFT");
  });

  it("leaves anything else as typed (an instrument not in the list may still be added)", () => {
    expect(resolveInstrument("TSLA", symbols, details)).toBe("TSLA");
    expect(resolveInstrument("Apple", symbols, details)).toBe("Apple");
  });
});

describe("market status", () => {
  it("labels the three statuses and nothing else", () => {
    expect(marketStatusLabel("open")).toBe("Open");
    expect(marketStatusLabel("pre_open")).toBe("Pre");
    expect(marketStatusLabel("closed")).toBe("Closed");
    expect(marketStatusLabel("halted")).toBeNull();
    expect(marketStatusLabel("toString")).toBeNull();
  });

  it("says which calendar the status follows", () => {
    expect(marketStatusTitle(details.get("AAPL")!)).toBe("Market open: hours 09:30-16:00 America/New_York, Mon-Fri, pre-open from 04:00");
    const crypto = detail("BTC-USD", "Bitcoin", { calendar: { timezone: "UTC", hours: "24/7", days: "Mon-Sun", pre_open: "" } });
    expect(marketStatusTitle(crypto)).toBe("Market open: trades 24/7");
  });
});

describe("nextRefreshMs", () => {
  const now = 1_765_000_000_000; // epoch ms
  const until = (ms: number) => detail("X", "x", { status_until_ns: `${BigInt(now + ms) * 1_000_000n}` });

  it("asks again just after the earliest status change ahead", () => {
    expect(nextRefreshMs([until(30_000), until(10_000)], now)).toBe(10_000 + REFRESH_TIMING.marginMs);
  });

  it("asks within a minute anyway: no boundary (24/7 says 0) or a far one", () => {
    expect(nextRefreshMs([], now)).toBe(60_000);
    expect(nextRefreshMs([detail("BTC-USD", "Bitcoin")], now)).toBe(60_000);
    expect(nextRefreshMs([until(3_600_000)], now)).toBe(60_000);
  });

  it("ignores a boundary already past: the server said so after it, asking again would loop", () => {
    expect(nextRefreshMs([until(-5_000)], now)).toBe(60_000);
    expect(nextRefreshMs([until(-5_000), until(20_000)], now)).toBe(20_000 + REFRESH_TIMING.marginMs);
  });

  it("never asks sooner than the minimum, and keeps the stamp's precision beyond 2^53", () => {
    expect(nextRefreshMs([until(1)], now, { maxMs: 60_000, marginMs: 0, minMs: 1_000 })).toBe(1_000);
    // 0.5 ms ahead, in nanoseconds a double could not tell from now.
    const close = detail("X", "x", { status_until_ns: `${BigInt(now) * 1_000_000n + 500_000n}` });
    expect(nextRefreshMs([close], now, { maxMs: 60_000, marginMs: 0, minMs: 0 })).toBe(1);
  });
});
