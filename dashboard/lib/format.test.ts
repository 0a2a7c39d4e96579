import { describe, expect, it } from "vitest";

import { DASH, chartPriceFormats, derivedPrice, percent, price, rounded, signedPrice, size, volume } from "./format";

describe("price", () => {
  it("pads to the instrument's decimals", () => {
    expect(price("211.4", 2)).toBe("211.40");
    expect(price("461", 2)).toBe("461.00");
    expect(price("0", 2)).toBe("0.00");
    expect(price("1.0812", 5)).toBe("1.08120");
    expect(price("5012.25", 2)).toBe("5012.25");
  });

  it("rounds a value with more digits half away from zero", () => {
    expect(price("1.005", 2)).toBe("1.01");
    expect(price("1.0049", 2)).toBe("1.00");
    expect(price("-1.005", 2)).toBe("-1.01");
  });

  it("keeps negative values signed (a spread or a change can be)", () => {
    expect(price("-0.3", 2)).toBe("-0.30");
  });

  it("shows the value as it came when the decimals are unknown or unusable", () => {
    expect(price("211.4")).toBe("211.4");
    expect(price("211.4", null)).toBe("211.4");
    expect(price("211.4", -1)).toBe("211.4");
    expect(price("211.4", 2.5)).toBe("211.4");
    expect(price("211.4", 99)).toBe("211.4");
  });

  it("shows a dash for an unknown value and what is not a decimal as it came", () => {
    expect(price(null, 2)).toBe(DASH);
    expect(price(undefined, 2)).toBe(DASH);
    expect(price("n/a", 2)).toBe("n/a");
  });

  it("does not group thousands (a price is copied into a ticket as a number)", () => {
    expect(price("97250.5", 2)).toBe("97250.50");
  });
});

describe("derivedPrice", () => {
  it("shows VWAP and mid one decimal finer than the price", () => {
    expect(derivedPrice("229.8312345", 2)).toBe("229.831");
    expect(derivedPrice("229.8", 2)).toBe("229.800");
    expect(derivedPrice("229.8315", 2)).toBe("229.832");
    expect(derivedPrice("5012.125", 2)).toBe("5012.125"); // a mid on a 0.25 tick: exact
  });

  it("without decimals cuts at 4, rounding, and pads nothing", () => {
    expect(derivedPrice("229.831249", undefined)).toBe("229.8312");
    expect(derivedPrice("229.83125", undefined)).toBe("229.8313");
    expect(derivedPrice("229.8", undefined)).toBe("229.8");
    expect(rounded("1.23456789", 2)).toBe("1.23");
    expect(derivedPrice(null, 2)).toBe(DASH);
  });
});

describe("signedPrice", () => {
  it("signs every change at the instrument's decimals", () => {
    expect(signedPrice("1.2", 2)).toBe("+1.20");
    expect(signedPrice("-0.35", 2)).toBe("-0.35");
    expect(signedPrice("-3", 2)).toBe("-3.00");
  });

  it("shows unchanged as +0.00, never +0 or -0.00", () => {
    expect(signedPrice("0", 2)).toBe("+0.00");
    expect(signedPrice("-0.001", 2)).toBe("+0.00");
    expect(signedPrice("0", 0)).toBe("+0");
  });

  it("without decimals signs the value as it came", () => {
    expect(signedPrice("1.2")).toBe("+1.2");
    expect(signedPrice("-1.2")).toBe("-1.2");
    expect(signedPrice(null, 2)).toBe(DASH);
  });
});

describe("percent", () => {
  it("is signed at 2 decimals, zero included", () => {
    expect(percent(0.534)).toBe("+0.53%");
    expect(percent(-1.2)).toBe("-1.20%");
    expect(percent(0)).toBe("+0.00%");
    expect(percent(-0.001)).toBe("+0.00%");
    expect(percent(-0)).toBe("+0.00%");
  });

  it("rounds the number as written, half away from zero", () => {
    expect(percent(1.005)).toBe("+1.01%");
    expect(percent(-1.005)).toBe("-1.01%");
    expect(percent(1e-7)).toBe("+0.00%");
  });

  it("is a dash when unknown", () => {
    expect(percent(null)).toBe(DASH);
    expect(percent(undefined)).toBe(DASH);
    expect(percent(Number.NaN)).toBe(DASH);
  });
});

describe("size", () => {
  it("groups thousands of the whole part", () => {
    expect(size("1234567")).toBe("1,234,567");
    expect(size("1000")).toBe("1,000");
    expect(size("999")).toBe("999");
    expect(size("0")).toBe("0");
    expect(size("-1234.5")).toBe("-1,234.5");
  });

  it("keeps the fraction as it came (fractional lots)", () => {
    expect(size("12345.0001")).toBe("12,345.0001");
    expect(size("0.5")).toBe("0.5");
  });

  it("leaves what is not a decimal alone", () => {
    expect(size("lots")).toBe("lots");
    expect(size(null)).toBe(DASH);
  });
});

describe("volume", () => {
  it("is compact above a thousand, at 2 decimals of the unit", () => {
    expect(volume("1234567")).toBe("1.23M");
    expect(volume("1235000")).toBe("1.24M"); // half away from zero, exactly
    expect(volume("12345")).toBe("12.35k");
    expect(volume("1000")).toBe("1.00k");
    expect(volume("2500000000")).toBe("2.50B");
  });

  it("moves to the next unit when rounding reaches a thousand", () => {
    expect(volume("999999")).toBe("1.00M");
    expect(volume("999994")).toBe("999.99k");
  });

  it("is as it came below a thousand", () => {
    expect(volume("999")).toBe("999");
    expect(volume("0.5")).toBe("0.5");
    expect(volume(null)).toBe(DASH);
  });
});

describe("chartPriceFormats", () => {
  it("puts the candles at the decimals on the tick, the VWAP one finer", () => {
    expect(chartPriceFormats(2, "0.25")).toEqual({
      candles: { type: "price", precision: 2, minMove: 0.25 },
      vwap: { type: "price", precision: 3, minMove: 0.001 },
    });
    expect(chartPriceFormats(5, "0.00001").candles).toEqual({ type: "price", precision: 5, minMove: 0.00001 });
  });

  it("falls back to the library's default without usable details", () => {
    const fallback = { type: "price", precision: 2, minMove: 0.01 };
    expect(chartPriceFormats(undefined, "0.01").candles).toEqual(fallback);
    expect(chartPriceFormats(2, undefined).candles).toEqual(fallback);
    expect(chartPriceFormats(2, "0")).toEqual({ candles: fallback, vwap: fallback });
    expect(chartPriceFormats(1, "0.01").candles).toEqual(fallback); // the tick does not fit the decimals
  });
});
