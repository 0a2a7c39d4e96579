import { afterEach, describe, expect, it, vi } from "vitest";

import { allowedHosts, cleanToken, endpoints, loadSnapshot, parseForwardedProto, parseHost } from "./server";
import { parseWatchlist } from "./watchlist";

afterEach(() => {
  vi.unstubAllGlobals();
  delete process.env.TAPEWIRE_API_URL;
  delete process.env.TAPEWIRE_PUBLIC_API_URL;
  delete process.env.TAPEWIRE_ALLOWED_HOSTS;
});

describe("endpoints", () => {
  it("points browsers at the host they used, on dashboard_api's port", () => {
    process.env.TAPEWIRE_API_URL = "http://dashboard-api:8000/";
    process.env.TAPEWIRE_ALLOWED_HOSTS = "desk.example";
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

describe("parseHost", () => {
  it("takes DNS names, dotted-quad IPv4 and bracketed IPv6, with an optional port", () => {
    expect(parseHost("desk.example.com")).toEqual({ hostname: "desk.example.com", port: null });
    expect(parseHost("Desk.Example.COM:3000")).toEqual({ hostname: "desk.example.com", port: 3000 });
    expect(parseHost("desk.example.com.")).toEqual({ hostname: "desk.example.com", port: null });
    expect(parseHost("localhost:65535")).toEqual({ hostname: "localhost", port: 65535 });
    expect(parseHost("my-desk-01")).toEqual({ hostname: "my-desk-01", port: null });
    expect(parseHost("127.0.0.1:3000")).toEqual({ hostname: "127.0.0.1", port: 3000 });
    expect(parseHost("[::1]")).toEqual({ hostname: "[::1]", port: null });
    expect(parseHost("[::1]:3000")).toEqual({ hostname: "[::1]", port: 3000 });
    expect(parseHost("[2001:DB8:0:0:0:0:0:1]:8443")).toEqual({ hostname: "[2001:db8::1]", port: 8443 });
    expect(parseHost("[::ffff:192.0.2.1]")).toEqual({ hostname: "[::ffff:c000:201]", port: null });
  });

  it.each([
    ["missing", null],
    ["undefined", undefined],
    ["empty", ""],
    ["a space", "a b"],
    ["only a space", " "],
    ["leading space", " desk.example"],
    ["userinfo", "user@desk.example"],
    ["userinfo and attacker host", "desk.example@evil.example"],
    ["a path", "desk.example/evil"],
    ["a query", "desk.example?x=1"],
    ["a fragment", "desk.example#x"],
    ["a backslash", "evil.example\\desk.example"],
    ["a quote", 'desk.example"><script>'],
    ["angle brackets", "<script>alert(1)</script>"],
    ["a NUL", "desk.example\u0000"],
    ["a CR LF", "desk.example\r\nSet-Cookie: x=1"],
    ["a tab", "desk\t.example"],
    ["a DEL", "desk.example\u007f"],
    ["non-ASCII", "dèsk.example"],
    ["an underscore", "desk_1.example"],
    ["a percent escape", "desk%2eexample"],
    ["a scheme", "http://desk.example"],
    ["too long", `${"a".repeat(60)}.`.repeat(5)],
    ["over 255 characters", "a".repeat(256)],
    ["a label over 63", `${"a".repeat(64)}.example`],
    ["an empty label", "desk..example"],
    ["only a dot", "."],
    ["a leading hyphen", "-desk.example"],
    ["a trailing hyphen", "desk-.example"],
    ["an empty port", "desk.example:"],
    ["port 0", "desk.example:0"],
    ["a port over 65535", "desk.example:65536"],
    ["a long port", "desk.example:123456"],
    ["a leading-zero port", "desk.example:080"],
    ["a signed port", "desk.example:+80"],
    ["two ports", "desk.example:80:81"],
    ["short IPv4", "127.1"],
    ["octal IPv4", "0177.0.0.1"],
    ["IPv4 octet over 255", "256.0.0.1"],
    ["five octets", "1.2.3.4.5"],
    ["hex IPv4", "0x7f.0.0.1"],
    ["numeric host", "2130706433"],
    ["bare IPv6", "::1"],
    ["bad IPv6", "[::1::2]"],
    ["IPv6 with a zone", "[fe80::1%25eth0]"],
    ["IPv6 with letters", "[::g]"],
    ["unclosed IPv6", "[::1"],
    ["IPv6 with garbage after", "[::1]x"],
  ])("refuses %s", (_what, host) => {
    expect(parseHost(host)).toBeNull();
  });

  it("never throws", () => {
    for (let code = 0; code < 256; code += 1) {
      const char = String.fromCharCode(code);
      expect(() => parseHost(`desk${char}example`)).not.toThrow();
      expect(() => parseHost(`[${char}]`)).not.toThrow();
    }
  });
});

describe("parseForwardedProto", () => {
  it("keeps only http and https", () => {
    expect(parseForwardedProto("https")).toBe("https");
    expect(parseForwardedProto("HTTP")).toBe("http");
    expect(parseForwardedProto("https, http")).toBe("https");
    expect(parseForwardedProto("javascript")).toBeNull();
    expect(parseForwardedProto("https://evil.example")).toBeNull();
    expect(parseForwardedProto("")).toBeNull();
    expect(parseForwardedProto(null)).toBeNull();
  });
});

describe("allowed hosts", () => {
  it("defaults to dashboard_api's host and the loopback names", () => {
    process.env.TAPEWIRE_API_URL = "http://dashboard-api:8000";
    expect([...allowedHosts()].sort()).toEqual(["127.0.0.1", "[::1]", "dashboard-api", "localhost"]);
  });

  it("reads TAPEWIRE_ALLOWED_HOSTS, case and ports aside, dropping malformed entries", () => {
    process.env.TAPEWIRE_ALLOWED_HOSTS = " Desk.Example.com , 10.0.0.5:3000,::1,,bad host,evil@x ";
    expect([...allowedHosts()].sort()).toEqual(["10.0.0.5", "[::1]", "desk.example.com"]);
  });

  it("falls back to dashboard_api's host for a host not on the list", () => {
    process.env.TAPEWIRE_API_URL = "http://127.0.0.1:8000";
    const api = endpoints("evil.example", null);
    expect(api.public).toBe("http://127.0.0.1:8000");
    expect(api.websocket).toBe("ws://127.0.0.1:8000/ws");
    process.env.TAPEWIRE_ALLOWED_HOSTS = "desk.example.com";
    expect(endpoints("evil.example:3000", null).public).toBe("http://127.0.0.1:8000");
    expect(endpoints("sub.desk.example.com", null).public).toBe("http://127.0.0.1:8000");
    expect(endpoints("desk.example.com.evil.example", null).public).toBe("http://127.0.0.1:8000");
    // The list replaces the default: loopback is no longer trusted unless listed.
    process.env.TAPEWIRE_API_URL = "http://dashboard-api:8000";
    expect(endpoints("localhost:3000", null).public).toBe("http://dashboard-api:8000");
  });

  it("uses an allowed host, with any port, by IPv4, IPv6 or name", () => {
    process.env.TAPEWIRE_API_URL = "http://dashboard-api:8000";
    process.env.TAPEWIRE_ALLOWED_HOSTS = "localhost,127.0.0.1,desk.example.com,[::1]";
    expect(endpoints("DESK.example.com:3000", "https").websocket).toBe("wss://desk.example.com:8000/ws");
    expect(endpoints("127.0.0.1:3000", null).public).toBe("http://127.0.0.1:8000");
    expect(endpoints("[::1]:3000", null).websocket).toBe("ws://[::1]:8000/ws");
    expect(endpoints("[0:0:0:0:0:0:0:1]", null).public).toBe("http://[::1]:8000");
  });

  it("never puts a malformed or injected host in the page, and never throws", () => {
    process.env.TAPEWIRE_API_URL = "http://127.0.0.1:8000";
    process.env.TAPEWIRE_ALLOWED_HOSTS = "localhost,desk.example.com";
    for (const host of [
      "a b",
      "",
      "desk.example.com@evil.example",
      "evil.example/desk.example.com",
      "desk.example.com\r\nX: y",
      'desk.example.com"><script>alert(1)</script>',
      "x".repeat(300),
      "[::1",
      "localhost:99999",
    ]) {
      const api = endpoints(host, null);
      expect(api.public).toBe("http://127.0.0.1:8000");
      expect(api.websocket).toBe("ws://127.0.0.1:8000/ws");
    }
  });

  it("takes only http or https from X-Forwarded-Proto", () => {
    expect(endpoints("localhost", "https").public).toBe("https://localhost:8000");
    expect(endpoints("localhost", "javascript").public).toBe("http://localhost:8000");
    expect(endpoints("localhost", "wss://evil.example").websocket).toBe("ws://localhost:8000/ws");
  });

  it("ignores the request's host when TAPEWIRE_PUBLIC_API_URL is set", () => {
    process.env.TAPEWIRE_PUBLIC_API_URL = "https://api.desk.example/";
    expect(endpoints("evil.example", "http").public).toBe("https://api.desk.example");
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

describe("loadSnapshot", () => {
  it("hands the first paint the instruments' details, status stamps exact", async () => {
    const bodies: Record<string, string> = {
      "/api/instruments":
        '{"instruments":["ESZ6","AAPL"],"details":[{"symbol":"AAPL","name":"Apple Inc.","decimals":2,"tick_size":"0.01","market_status":"open","status_until_ns":1765000000123456789}]}',
      "/api/snapshot": '{"states":[{"instrument":"AAPL","version":3,"last_price":"229.8"}]}',
    };
    vi.stubGlobal("fetch", async (url: string) => new Response(bodies[new URL(url).pathname], { status: 200 }));
    const loaded = await loadSnapshot("http://api.test", null, null);
    expect(loaded.kind).toBe("ok");
    if (loaded.kind !== "ok") return;
    expect(loaded.instruments).toEqual(["AAPL", "ESZ6"]);
    expect(loaded.details).toHaveLength(1);
    expect(loaded.details[0]).toMatchObject({ symbol: "AAPL", decimals: 2, status_until_ns: "1765000000123456789" });
    expect(loaded.states[0].last_price).toBe("229.8");
  });

  it("has no details from a server that sends none", async () => {
    const bodies: Record<string, string> = { "/api/instruments": '{"instruments":["AAPL"]}', "/api/snapshot": '{"states":[]}' };
    vi.stubGlobal("fetch", async (url: string) => new Response(bodies[new URL(url).pathname], { status: 200 }));
    const loaded = await loadSnapshot("http://api.test", null, null);
    expect(loaded.kind === "ok" && loaded.details).toEqual([]);
  });
});
