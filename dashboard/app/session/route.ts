// Log in with a token (checked against dashboard_api before it is kept) or log out. The token
// lives in an HttpOnly cookie; the page hands it to its own WebSocket and REST calls.

import { NextResponse, type NextRequest } from "next/server";

import { checkToken } from "@/lib/api";
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
  const check = await checkToken(api.internal, token);
  if (check === "unreachable") return home(request, "dashboard_api is not reachable: try again");
  if (check === "refused") return home(request, "the token was refused (invalid or expired)");
  if (check !== "ok") return home(request, `dashboard_api answered HTTP ${check.status}`);
  const response = home(request);
  response.cookies.set(TOKEN_COOKIE, token, {
    httpOnly: true,
    sameSite: "lax",
    secure: request.nextUrl.protocol === "https:",
    path: "/",
  });
  return response;
}
