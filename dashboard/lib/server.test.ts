import { afterEach, describe, expect, it } from "vitest";

import { cleanToken, endpoints } from "./server";
import { parseWatchlist } from "./watchlist";

afterEach(() => {
  delete process.env.TAPEWIRE_API_URL;
  delete process.env.TAPEWIRE_PUBLIC_API_URL;
});

describe("endpoints", () => {
  it("points browsers at the host they used, on dashboard_api's port", () => {
    process.env.TAPEWIRE_API_URL = "http://dashboard-api:8000/";
    const api = endpoints("desk.example:3000", null);
    expect(api.internal).toBe("http://dashboard-api:8000");
    expect(api.public).toBe("http://desk.example:8000");
    expect(api.websocket).toBe("ws://desk.example:8000/ws");
  });

  it("uses the public URL when one is configured, wss behind https", () => {
    process.env.TAPEWIRE_PUBLIC_API_URL = "https://api.desk.example";
    expect(endpoints("desk.example", "https").websocket).toBe("wss://api.desk.example/ws");
  });
});

describe("untrusted input", () => {
  it("keeps only printable, bounded tokens", () => {
    expect(cleanToken(" abc.def ")).toBe("abc.def");
    expect(cleanToken("a b")).toBeNull();
    expect(cleanToken("x".repeat(9000))).toBeNull();
    expect(cleanToken(undefined)).toBeNull();
  });

  it("keeps valid, distinct instrument names from a cookie", () => {
    expect(parseWatchlist("AAPL,MSFT,AAPL,<script>,BRK.B")).toEqual(["AAPL", "MSFT", "BRK.B"]);
    expect(parseWatchlist("")).toBeNull();
  });
});
