// Log in with a token (checked against dashboard_api before it is kept) or log out. The token
// lives in an HttpOnly cookie; the page hands it to its own WebSocket and REST calls.

import { NextResponse, type NextRequest } from "next/server";

import { TOKEN_COOKIE, cleanToken, endpoints } from "@/lib/server";

function home(request: NextRequest, error?: string): NextResponse {
  const url = new URL("/", request.url);
  if (error) url.searchParams.set("login_error", error);
  // 303: the browser follows with a GET, so a reload does not post the token again.
  return NextResponse.redirect(url, 303);
}

export async function POST(request: NextRequest): Promise<NextResponse> {
  const form = await request.formData().catch(() => null);
  if (form?.get("action") === "logout") {
    const response = home(request);
    response.cookies.delete(TOKEN_COOKIE);
    return response;
  }
  const token = cleanToken(form?.get("token")?.toString());
  if (!token) return home(request, "enter a token (printable characters, at most 8 KiB)");
  const api = endpoints(request.headers.get("host"), request.headers.get("x-forwarded-proto"));
  let status: number;
  try {
    const answer = await fetch(`${api.internal}/api/instruments`, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
      signal: AbortSignal.timeout(3000),
    });
    status = answer.status;
  } catch {
    return home(request, "dashboard_api is not reachable: try again");
  }
  if (status === 401 || status === 403) return home(request, "the token was refused (invalid or expired)");
  if (status !== 200) return home(request, `dashboard_api answered HTTP ${status}`);
  const response = home(request);
  response.cookies.set(TOKEN_COOKIE, token, {
    httpOnly: true,
    sameSite: "lax",
    secure: request.nextUrl.protocol === "https:",
    path: "/",
  });
  return response;
}
