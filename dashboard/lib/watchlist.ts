// The user's choice of instruments, remembered in the browser in a cookie (a year), so that the
// server renders the same rows the page will then keep live: no flicker, no second fetch.

export const WATCHLIST_COOKIE = "tw_watchlist";
const NAME = /^[A-Za-z0-9._:/-]{1,32}$/;
export const MAX_WATCHLIST = 200;

/** Names from untrusted text (a cookie, storage): valid ones only, no repeats, bounded. */
export function parseWatchlist(text: string | null | undefined): string[] | null {
  if (!text) return null;
  const names = text
    .split(",")
    .map((name) => name.trim())
    .filter((name) => NAME.test(name));
  return [...new Set(names)].slice(0, MAX_WATCHLIST);
}

export function isInstrumentName(name: string): boolean {
  return NAME.test(name);
}

export function saveWatchlist(names: readonly string[]): void {
  const text = names.join(",");
  document.cookie = `${WATCHLIST_COOKIE}=${encodeURIComponent(text)}; path=/; max-age=31536000; samesite=lax`;
}
