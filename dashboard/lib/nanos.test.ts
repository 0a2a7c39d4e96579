import { describe, expect, it } from "vitest";

import { compareNanos, hasStamp, msBetween, msSince, nanosFromMs, nanosToSeconds, parseJson } from "./nanos";

describe("parseJson", () => {
  it("keeps every digit of the `_ns` integers, and only of those", () => {
    const text =
      '{"version":1207,"times":{"exchange_ns":1763800000123456789,"ingest_ns" : 1763800000123456791},"bars":[{"start_time_ns":1763800000000000000}],"n":9007199254740993}';
    const parsed = parseJson(text) as { version: number; times: Record<string, string>; bars: { start_time_ns: string }[]; n: number };
    expect(parsed.version).toBe(1207);
    expect(parsed.times.exchange_ns).toBe("1763800000123456789");
    expect(parsed.times.ingest_ns).toBe("1763800000123456791");
    expect(parsed.bars[0].start_time_ns).toBe("1763800000000000000");
    // A JSON number would not have kept them:
    expect(String(JSON.parse("1763800000123456789"))).not.toBe("1763800000123456789");
    expect(typeof parsed.n).toBe("number");
  });

  it("leaves strings alone, even when they look like a stamp", () => {
    const text = '{"reason":"bad \\"x_ns\\":12, \\"y_ns\\":3}","event_ns":5,"note":"\\\\","z_ns":"already"}';
    const parsed = parseJson(text) as Record<string, string>;
    expect(parsed.reason).toBe('bad "x_ns":12, "y_ns":3}');
    expect(parsed.event_ns).toBe("5");
    expect(parsed.note).toBe("\\");
    expect(parsed.z_ns).toBe("already");
  });

  it("parses frames without stamps as JSON.parse does", () => {
    expect(parseJson('{"type":"welcome","heartbeat_s":5}')).toEqual({ type: "welcome", heartbeat_s: 5 });
  });
});

describe("stamp arithmetic", () => {
  it("gives sub-microsecond latencies that plain numbers get wrong", () => {
    const stamp = "1763800000123456789";
    expect(msSince(stamp, 1_763_800_000_124)).toBeCloseTo(0.543211, 9);
    // The same with doubles is off in the fourth decimal of a millisecond:
    const naive = 1_763_800_000_124 - Number(stamp) / 1e6;
    expect(Math.abs(naive - 0.543211)).toBeGreaterThan(1e-6);
  });

  it("measures hops between stamps exactly", () => {
    expect(msBetween("1763800000123456789", "1763800000125456790")).toBe(2.000001);
    expect(msBetween("1763800000125456790", "1763800000123456789")).toBe(-2.000001);
  });

  it("converts, compares and tests stamps", () => {
    expect(nanosToSeconds("1763800004999999999")).toBe(1763800004);
    expect(compareNanos("1763800000000000001", "1763800000000000000")).toBe(1);
    expect(compareNanos("1763800000000000000", "1763800000000000001")).toBe(-1);
    expect(compareNanos("7", 7)).toBe(0);
    expect(hasStamp("0")).toBe(false);
    expect(hasStamp("1763800000000000000")).toBe(true);
    expect(hasStamp(undefined)).toBe(false);
    expect(nanosFromMs(1763800000123)).toBe("1763800000123000000");
  });
});
