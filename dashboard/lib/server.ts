// What the Next.js server needs to know and fetch: where dashboard_api is (for itself and for
// browsers), which token to use, and the snapshot the first paint is rendered from.

import type { InstrumentState } from "./types";

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

/** `TAPEWIRE_API_URL` for the server; `TAPEWIRE_PUBLIC_API_URL` for browsers, by default the
 * host the browser used for this page with dashboard_api's port. */
export function endpoints(requestHost: string | null, forwardedProto: string | null): Endpoints {
  const internal = trimSlash(process.env.TAPEWIRE_API_URL || "http://127.0.0.1:8000");
  let publicUrl = process.env.TAPEWIRE_PUBLIC_API_URL;
  if (!publicUrl) {
    const api = new URL(internal);
    const hostname = requestHost ? new URL(`http://${requestHost}`).hostname : api.hostname;
    const scheme = forwardedProto === "https" ? "https" : "http";
    const host = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
    publicUrl = `${scheme}://${host}:${api.port || (api.protocol === "https:" ? 443 : 80)}`;
  }
  publicUrl = trimSlash(publicUrl);
  const websocket = `${publicUrl.replace(/^http/, "ws")}/ws`;
  return { internal, public: publicUrl, websocket };
}

export type Loaded =
  | { kind: "ok"; instruments: string[]; states: InstrumentState[] }
  | { kind: "unauthorized"; reason: string }
  | { kind: "unavailable"; reason: string };

async function getJson(url: string, token: string | null): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    cache: "no-store",
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

function reasonOf(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "error" in body) return String((body as { error: unknown }).error);
  return fallback;
}

async function fetchStates(api: string, token: string | null, names: string[]): Promise<{ status: number; body: unknown }> {
  if (names.length === 0) return { status: 200, body: { states: [] } };
  return getJson(`${api}/api/snapshot?instruments=${encodeURIComponent(names.join(","))}`, token);
}

/** The instruments there are, and the current state of those on the watchlist (all by default).
 * With a remembered watchlist both requests go out at once: the first paint waits for one round trip. */
export async function loadSnapshot(api: string, token: string | null, watchlist: string[] | null): Promise<Loaded> {
  try {
    const [listed, early] = await Promise.all([
      getJson(`${api}/api/instruments`, token),
      watchlist ? fetchStates(api, token, watchlist) : Promise.resolve(null),
    ]);
    if (listed.status === 401 || listed.status === 403) {
      return { kind: "unauthorized", reason: reasonOf(listed.body, `HTTP ${listed.status}`) };
    }
    if (listed.status !== 200) return { kind: "unavailable", reason: reasonOf(listed.body, `HTTP ${listed.status}`) };
    const instruments = ((listed.body as { instruments: string[] }).instruments ?? []).slice().sort();
    const snapshot = early ?? (await fetchStates(api, token, instruments.slice(0, 50)));
    if (snapshot.status !== 200) return { kind: "unavailable", reason: reasonOf(snapshot.body, `HTTP ${snapshot.status}`) };
    return { kind: "ok", instruments, states: (snapshot.body as { states: InstrumentState[] }).states };
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
