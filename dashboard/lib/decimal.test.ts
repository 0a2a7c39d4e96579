import { describe, expect, it } from "vitest";

import { compareDecimals, fixedDecimal, isMultipleOf, parseDecimal, shiftPoint, signOf, toText } from "./decimal";

describe("parseDecimal", () => {
  it("reads digits, a fraction and a sign", () => {
    expect(parseDecimal("211.40")).toEqual({ negative: false, units: 21140n, scale: 2 });
    expect(parseDecimal("-0.5")).toEqual({ negative: true, units: 5n, scale: 1 });
    expect(parseDecimal("+3")).toEqual({ negative: false, units: 3n, scale: 0 });
  });

  it.each(["", "abc", "1e5", "1.2.3", " 1", "1 ", ".5", "5.", "NaN", "Infinity", "1,000", `1${"0".repeat(40)}`])("refuses %j", (text) => {
    expect(parseDecimal(text)).toBeNull();
  });
});

describe("fixedDecimal", () => {
  it("pads to the places", () => {
    expect(fixedDecimal("211.4", 2)).toBe("211.40");
    expect(fixedDecimal("461", 2)).toBe("461.00");
    expect(fixedDecimal("0", 2)).toBe("0.00");
    expect(fixedDecimal("1.08", 5)).toBe("1.08000");
    expect(fixedDecimal("7", 0)).toBe("7");
  });

  it("rounds half away from zero, on the digits (no binary float)", () => {
    expect(fixedDecimal("1.005", 2)).toBe("1.01"); // (1.005).toFixed(2) is "1.00"
    expect(fixedDecimal("2.345", 2)).toBe("2.35");
    expect(fixedDecimal("2.3449999", 2)).toBe("2.34");
    expect(fixedDecimal("-2.345", 2)).toBe("-2.35");
    expect(fixedDecimal("-2.344", 2)).toBe("-2.34");
    expect(fixedDecimal("0.125", 2)).toBe("0.13");
    expect(fixedDecimal("229.995", 2)).toBe("230.00");
    expect(fixedDecimal("9.5", 0)).toBe("10");
    expect(fixedDecimal("-9.5", 0)).toBe("-10");
  });

  it("keeps every digit of long values", () => {
    expect(fixedDecimal("123456789012345.123456789", 2)).toBe("123456789012345.12");
    expect(fixedDecimal("0.000000000000000005", 17)).toBe("0.00000000000000001");
  });

  it("gives zero no sign", () => {
    expect(fixedDecimal("-0.001", 2)).toBe("0.00");
    expect(fixedDecimal("-0", 2)).toBe("0.00");
    expect(fixedDecimal("-0.005", 2)).toBe("-0.01");
  });

  it("is null for what is not a decimal", () => {
    expect(fixedDecimal("n/a", 2)).toBeNull();
  });
});

describe("shiftPoint", () => {
  it("moves the point both ways without losing a digit", () => {
    expect(toText(shiftPoint(parseDecimal("1234567")!, -6))).toBe("1.234567");
    expect(toText(shiftPoint(parseDecimal("1.5")!, 3))).toBe("1500");
    expect(toText(shiftPoint(parseDecimal("0.001")!, 2))).toBe("0.1");
  });
});

describe("compareDecimals and signOf", () => {
  it("compare by value, not by text", () => {
    expect(compareDecimals("1.50", "1.5")).toBe(0);
    expect(compareDecimals("10", "9.99")).toBe(1);
    expect(compareDecimals("-1", "0.5")).toBe(-1);
    expect(compareDecimals("x", "1")).toBeNull();
    expect(signOf("-0.00")).toBe(0);
    expect(signOf("-0.01")).toBe(-1);
    expect(signOf("3")).toBe(1);
    expect(signOf("")).toBeNull();
  });
});

describe("isMultipleOf", () => {
  it("tells a price on the tick grid", () => {
    expect(isMultipleOf("5012.25", "0.25")).toBe(true);
    expect(isMultipleOf("5012.30", "0.25")).toBe(false);
    expect(isMultipleOf("229.8", "0.01")).toBe(true);
    expect(isMultipleOf("229.805", "0.01")).toBe(false);
    expect(isMultipleOf("1.08123", "0.00001")).toBe(true);
    expect(isMultipleOf("100", "5")).toBe(true);
  });

  it("has no answer for a step that is not positive or a value that is not a decimal", () => {
    expect(isMultipleOf("1", "0")).toBeNull();
    expect(isMultipleOf("1", "-0.01")).toBeNull();
    expect(isMultipleOf("abc", "0.01")).toBeNull();
  });
});
