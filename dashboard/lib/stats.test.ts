import { describe, expect, it } from "vitest";

import { LatencyWindow, RateMeter, backoffMs } from "./stats";

describe("LatencyWindow", () => {
  it("is empty until the first sample", () => {
    expect(new LatencyWindow().quantile(0.5)).toBeNull();
  });

  it("gives nearest-rank quantiles over the last samples only", () => {
    const window = new LatencyWindow(100);
    for (let i = 1; i <= 100; i++) window.add(i);
    expect(window.quantile(0.5)).toBe(50);
    expect(window.quantile(0.99)).toBe(99);
    for (let i = 0; i < 100; i++) window.add(1000);
    expect(window.size).toBe(100);
    expect(window.quantile(0.5)).toBe(1000);
  });
});

describe("RateMeter", () => {
  it("averages over its window and forgets what fell out of it", () => {
    const meter = new RateMeter(1000, 100);
    for (let t = 0; t < 1000; t += 10) meter.add(t);
    expect(meter.perSecond(999)).toBe(100);
    expect(meter.perSecond(5000)).toBe(0);
  });
});

describe("backoffMs", () => {
  it("grows exponentially within its bounds", () => {
    expect(backoffMs(0, 0)).toBe(250);
    expect(backoffMs(0, 1)).toBe(500);
    expect(backoffMs(3, 1)).toBe(4000);
    expect(backoffMs(20, 1)).toBe(10_000);
  });
});
