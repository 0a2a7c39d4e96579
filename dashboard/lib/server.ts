// What the Next.js server needs to know and fetch: where dashboard_api is (for itself and for
// browsers), which token to use, and the snapshot the first paint is rendered from.

import { errorOf, getInstruments, getSnapshot } from "./api";
import type { InstrumentDetails, InstrumentState } from "./types";

export const TOKEN_COOKIE = "tw_token";
export const MAX_TOKEN_BYTES = 8192;
const FETCH_TIMEOUT_MS = 3000;

export interface Endpoints {
  /** dashboard_api as this server reaches it. */
  internal: string;
  /** dashboard_api as browsers reach it (REST and WebSocket). */
  public: string;
  websocket: string;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

/** A `Host` header (or an allow-list entry) taken apart: `hostname` lower-cased, an IPv6
 * address in brackets and in its canonical form; `port` when one was given. */
export interface HostPort {
  hostname: string;
  port: number | null;
}

const MAX_HOST_LENGTH = 255;
const HOST_SHAPE = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::([1-9][0-9]{0,4}))?$/;
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

function parseIpv6(address: string): string | null {
  // Only hex digits, colons and dots reach here; WHATWG URL checks the rest (one `::`, eight
  // groups, an embedded IPv4) and gives the canonical, compressed form.
  try {
    return new URL(`http://[${address}]/`).hostname;
  } catch {
    return null;
  }
}

function parseName(name: string): string | null {
  const hostname = (name.endsWith(".") ? name.slice(0, -1) : name).toLowerCase();
  if (!hostname || hostname.length > 253) return null;
  const labels = hostname.split(".");
  // All-numeric last label: an IPv4 address, and then only the plain dotted-quad form (no
  // `127.1`, no octal `0177.0.0.1`, which browsers and resolvers read in different ways).
  if (/^[0-9]+$/.test(labels[labels.length - 1])) {
    const ok = labels.length === 4 && labels.every((octet) => IPV4_OCTET.test(octet) && Number(octet) <= 255);
    return ok ? hostname : null;
  }
  return labels.every((label) => DNS_LABEL.test(label)) ? hostname : null;
}

/** A `Host` header as a browser sends it: a DNS name, a dotted-quad IPv4 or a bracketed IPv6,
 * with an optional port (1-65535). Anything else (empty, too long, spaces, `@`, `/`, control
 * characters, a userinfo or a path) is `null`: never an exception. */
export function parseHost(value: string | null | undefined): HostPort | null {
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_HOST_LENGTH) return null;
  const shape = HOST_SHAPE.exec(value);
  if (!shape) return null;
  const [, ipv6, name, portText] = shape;
  const hostname = ipv6 !== undefined ? parseIpv6(ipv6) : parseName(name);
  if (!hostname) return null;
  if (portText === undefined) return { hostname, port: null };
  const port = Number(portText);
  return port <= 65535 ? { hostname, port } : null;
}

/** `X-Forwarded-Proto`: "https" or "http" (the first hop's, case aside), else `null`. */
export function parseForwardedProto(value: string | null | undefined): "https" | "http" | null {
  const first = (value ?? "").split(",")[0].trim().toLowerCase();
  return first === "https" || first === "http" ? first : null;
}

function urlHostname(url: string): string | null {
  try {
    return new URL(url).hostname;
  } catch {
    return null;
  }
}

function internalUrl(): string {
  return trimSlash(process.env.TAPEWIRE_API_URL || "http://127.0.0.1:8000");
}

/** The hostnames a request's `Host` may name for this page to point browsers back at it:
 * `TAPEWIRE_ALLOWED_HOSTS` (comma-separated hostnames; a port given with an entry is ignored,
 * malformed entries are dropped), by default the hostname of `TAPEWIRE_API_URL` and the
 * loopback names (`localhost`, `127.0.0.1`, `[::1]`). */
export function allowedHosts(internal: string = internalUrl()): Set<string> {
  const configured = (process.env.TAPEWIRE_ALLOWED_HOSTS ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  const entries = configured.length > 0 ? configured : ["localhost", "127.0.0.1", "[::1]"];
  const hosts = new Set<string>();
  const apiHost = urlHostname(internal);
  if (configured.length === 0 && apiHost) hosts.add(apiHost);
  for (const entry of entries) {
    // A bare IPv6 address (`::1`) is accepted here, as it is written in a list.
    const parsed = parseHost(entry.split(":").length > 2 && !entry.startsWith("[") ? `[${entry}]` : entry);
    if (parsed) hosts.add(parsed.hostname);
  }
  return hosts;
}

/** `TAPEWIRE_API_URL` for the server; `TAPEWIRE_PUBLIC_API_URL` for browsers, by default the
 * host the browser used for this page, with dashboard_api's port, when that host is allowed.
 *
 * The `Host` header is the client's word: whatever it says would be written into the page as
 * the address its REST calls and WebSocket go to (host-header injection, and cache poisoning
 * when a shared cache keys the page on its path alone). So a `Host` that is malformed or not in
 * `allowedHosts()` is not used: the page points at the default, `TAPEWIRE_API_URL`'s own host.
 * We fall back rather than answer 400 because (1) the fallback depends on the configuration
 * only, so no request can make the page name another host, (2) the page stays usable for a
 * visitor who came by a name nobody listed (the default often works, e.g. on one machine), and
 * (3) an error that depends on a header would itself be cacheable: one bad request could make a
 * shared cache serve 400 to everyone (cache-poisoned denial of service). */
export function endpoints(requestHost: string | null, forwardedProto: string | null): Endpoints {
  const internal = internalUrl();
  let publicUrl = process.env.TAPEWIRE_PUBLIC_API_URL;
  if (!publicUrl) {
    const api = new URL(internal);
    const requested = parseHost(requestHost);
    const hostname = requested && allowedHosts(internal).has(requested.hostname) ? requested.hostname : api.hostname;
    const scheme = parseForwardedProto(forwardedProto) ?? "http";
    publicUrl = `${scheme}://${hostname}:${api.port || (api.protocol === "https:" ? 443 : 80)}`;
  }
  publicUrl = trimSlash(publicUrl);
  const websocket = `${publicUrl.replace(/^http/, "ws")}/ws`;
  return { internal, public: publicUrl, websocket };
}

export type Loaded =
  | { kind: "ok"; instruments: string[]; details: InstrumentDetails[]; states: InstrumentState[] }
  | { kind: "unauthorized"; reason: string }
  | { kind: "unavailable"; reason: string };

/** The instruments there are with their details (the first paint shows prices at each one's
 * decimals), and the current state of those on the watchlist (all by default). With a
 * remembered watchlist both requests go out at once: the first paint waits for one round trip. */
export async function loadSnapshot(api: string, token: string | null, watchlist: string[] | null): Promise<Loaded> {
  const options = { token, timeoutMs: FETCH_TIMEOUT_MS };
  try {
    const [listed, early] = await Promise.all([
      getInstruments(api, options),
      watchlist ? getSnapshot(api, watchlist, options) : Promise.resolve(null),
    ]);
    if (listed.status === 401 || listed.status === 403) {
      return { kind: "unauthorized", reason: errorOf(listed.body, `HTTP ${listed.status}`) };
    }
    if (listed.status !== 200) return { kind: "unavailable", reason: errorOf(listed.body, `HTTP ${listed.status}`) };
    const instruments = (listed.body?.instruments ?? []).slice().sort();
    const snapshot = early ?? (await getSnapshot(api, instruments.slice(0, 50), options));
    if (snapshot.status !== 200) return { kind: "unavailable", reason: errorOf(snapshot.body, `HTTP ${snapshot.status}`) };
    const details = Array.isArray(listed.body?.details) ? listed.body.details : [];
    return { kind: "ok", instruments, details, states: snapshot.body?.states ?? [] };
  } catch (error) {
    return { kind: "unavailable", reason: `dashboard_api is not reachable (${(error as Error).message})` };
  }
}

/** A token as a login form or the environment gives it: printable, bounded, or nothing. */
export function cleanToken(text: string | null | undefined): string | null {
  const token = (text ?? "").trim();
  if (!token || token.length > MAX_TOKEN_BYTES || !/^[\x21-\x7e]+$/.test(token)) return null;
  return token;
}
