// The first paint is rendered here, on the server, from dashboard_api's REST snapshot and the
// instruments' details (so its prices already have each instrument's decimals); the client
// component then resumes from those very versions over the WebSocket.

import { cookies, headers } from "next/headers";

import Dashboard from "@/components/Dashboard";
import LoginForm from "@/components/LoginForm";
import { TOKEN_COOKIE, cleanToken, endpoints, loadSnapshot } from "@/lib/server";
import { WATCHLIST_COOKIE, parseWatchlist } from "@/lib/watchlist";

// Prices are live: never prerender or cache this page.
export const dynamic = "force-dynamic";

export default async function Page({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const [jar, incoming, params] = await Promise.all([cookies(), headers(), searchParams]);
  const api = endpoints(incoming.get("host"), incoming.get("x-forwarded-proto"));
  const loggedIn = cleanToken(jar.get(TOKEN_COOKIE)?.value);
  const token = loggedIn ?? cleanToken(process.env.TAPEWIRE_TOKEN);
  const watchlistCookie = jar.get(WATCHLIST_COOKIE)?.value;
  const watchlist = parseWatchlist(watchlistCookie ? decodeURIComponent(watchlistCookie) : null);
  const loaded = await loadSnapshot(api.internal, token, watchlist);
  const loginError = typeof params.login_error === "string" ? params.login_error : null;

  if (loaded.kind === "unauthorized") {
    return <LoginForm reason={loginError ?? (token ? `the token was refused: ${loaded.reason}` : "dashboard_api requires a token")} />;
  }
  const states = loaded.kind === "ok" ? loaded.states : [];
  const instruments = loaded.kind === "ok" ? loaded.instruments : [];
  const details = loaded.kind === "ok" ? loaded.details : [];
  const initialWatchlist = watchlist ?? (loaded.kind === "ok" ? states.map((s) => s.instrument) : []);
  return (
    <Dashboard
      initialStates={states}
      available={instruments}
      initialDetails={details}
      initialWatchlist={initialWatchlist}
      watchlistChosen={watchlist !== null}
      apiUrl={api.public}
      websocketUrl={api.websocket}
      token={token}
      canLogOut={loggedIn !== null}
      serverNotice={loaded.kind === "unavailable" ? loaded.reason : null}
    />
  );
}
