// dashboard_api's REST calls (docs/api.md), for the Next.js server and the browser alike: one
// place that builds the URLs, sends the token, and reads the JSON (nanosecond stamps exact, see
// lib/nanos.ts). Each call answers the HTTP status and the body, or throws when there was no
// answer at all (network down, timeout, aborted).

import { parseJson } from "./nanos";
import type { InstrumentDetails, InstrumentState, StoredBar } from "./types";

export interface ApiOptions {
  /** A JWT, sent as `Authorization: Bearer`, or none (auth off). */
  token: string | null;
  signal?: AbortSignal;
  /** Give up after this long (the server's own fetches must not hang the page). */
  timeoutMs?: number;
}

export interface ApiAnswer<T> {
  status: number;
  ok: boolean;
  /** The parsed body, or null when it was not JSON. */
  body: T | null;
}

export interface InstrumentsBody {
  instruments: string[];
  /** The master's entries among them (name, decimals, market status); absent from older servers. */
  details?: InstrumentDetails[];
}

export interface SnapshotBody {
  states: InstrumentState[];
  missing?: string[];
}

export interface BarsBody {
  instrument: string;
  interval: string;
  bars: StoredBar[];
}

export interface ErrorBody {
  error?: string;
  code?: string;
}

function signalOf(options: ApiOptions): AbortSignal | undefined {
  const signals = [options.signal, options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs)];
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  if (present.length <= 1) return present[0];
  return AbortSignal.any(present);
}

async function getJson<T>(url: string, options: ApiOptions): Promise<ApiAnswer<T>> {
  const response = await fetch(url, {
    headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
    // Live data: never from a cache (and Next.js must not cache the server's fetches).
    cache: "no-store",
    signal: signalOf(options),
  });
  let body: T | null;
  try {
    body = parseJson(await response.text()) as T;
  } catch {
    body = null;
  }
  return { status: response.status, ok: response.ok, body };
}

/** The `error` of an error body, else `fallback`. */
export function errorOf(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "error" in body) return String((body as { error: unknown }).error);
  return fallback;
}

/** `GET /api/instruments`: every instrument there is (sorted), with the master's details. Also
 * how a token is checked. */
export function getInstruments(api: string, options: ApiOptions): Promise<ApiAnswer<InstrumentsBody>> {
  return getJson<InstrumentsBody>(`${api}/api/instruments`, options);
}

/** `GET /api/snapshot?instruments=…`: the current state of each (none asked: none fetched). */
export async function getSnapshot(api: string, names: readonly string[], options: ApiOptions): Promise<ApiAnswer<SnapshotBody>> {
  if (names.length === 0) return { status: 200, ok: true, body: { states: [] } };
  return getJson<SnapshotBody>(`${api}/api/snapshot?instruments=${encodeURIComponent(names.join(","))}`, options);
}

/** `GET /api/bars`: the latest `limit` bars of `interval`, oldest first. */
export function getBars(
  api: string,
  instrument: string,
  interval: string,
  limit: number,
  options: ApiOptions,
): Promise<ApiAnswer<BarsBody>> {
  const query = `instrument=${encodeURIComponent(instrument)}&interval=${encodeURIComponent(interval)}&limit=${limit}`;
  return getJson<BarsBody>(`${api}/api/bars?${query}`, options);
}

export type TokenCheck = "ok" | "refused" | "unreachable" | { status: number };

/** Whether dashboard_api takes a token (the login form checks it before keeping it). */
export async function checkToken(api: string, token: string, timeoutMs = 3000): Promise<TokenCheck> {
  let status: number;
  try {
    status = (await getInstruments(api, { token, timeoutMs })).status;
  } catch {
    return "unreachable";
  }
  if (status === 401 || status === 403) return "refused";
  return status === 200 ? "ok" : { status };
}
