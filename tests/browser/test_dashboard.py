"""The Next.js dashboard in headless Chromium against the running suite (see conftest.py)."""

from __future__ import annotations

import re
import time
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import AUTH_SECRET, Running
from tests.support import wait_for

pytestmark = pytest.mark.browser

# The grid's cells that show the state's decimal exactly as the API sends it.
EXACT_FIELDS = ("last_price", "bid_price", "ask_price", "spread", "session_high", "session_low")
# Reads the grid in one go: instrument → version and the text of every cell.
READ_GRID = """() => {
  const rows = [...document.querySelectorAll('[data-testid=watchlist] tbody tr')];
  const cellsOf = (row) => Object.fromEntries(
    [...row.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.textContent]));
  return Object.fromEntries(rows.map((row) => [
    row.dataset.instrument, {version: Number(row.dataset.version), cells: cellsOf(row)}]));
}"""


class GridRows(HTMLParser):
    """instrument → (version, {field: text}) of each watchlist row in server-rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[int, dict[str, str]]] = {}
        self._row: str | None = None
        self._field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-instrument"):
            self._row = found["data-instrument"]
            self.rows[self._row] = (int(found.get("data-version") or 0), {})
        elif tag == "td" and self._row and found.get("data-field"):
            self._field = found["data-field"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._field = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row and self._field:
            cells = self.rows[self._row][1]
            cells[self._field] = cells.get(self._field, "") + data


def snapshot(running: Running) -> dict[str, dict[str, Any]]:
    states = httpx.get(f"{running.api_url}/api/snapshot").json()["states"]
    return {state["instrument"]: state for state in states}


def open_live(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_test_id("health")).to_have_attribute("data-status", "live", timeout=20_000)


def test_first_paint_is_the_server_rendered_snapshot(running: Running) -> None:
    html = httpx.get(running.web_url, timeout=10).text
    after = snapshot(running)
    parser = GridRows()
    parser.feed(html)
    assert sorted(parser.rows) == sorted(after), "the HTML lists every instrument"
    for name, (version, cells) in parser.rows.items():
        assert 1 <= version <= after[name]["version"], name
        assert cells["last_price"] not in ("", "—"), f"{name} rendered without a price"
        assert Decimal(cells["last_price"]) > 0
    # Rendered before any WebSocket message could have arrived: the page has not connected yet.
    assert 'data-status="connecting"' in html


def test_page_without_javascript_still_shows_prices(running: Running, page: Page) -> None:
    context = page.context.browser.new_context(java_script_enabled=False)  # type: ignore[union-attr]
    static = context.new_page()
    static.goto(running.web_url)
    rows = static.locator("[data-testid=watchlist] tbody tr")
    assert rows.count() == 6
    assert re.fullmatch(r"\d+(\.\d+)?", rows.first.locator("td[data-field=last_price]").inner_text())
    context.close()


def test_grid_goes_live_and_matches_the_snapshot_at_the_same_versions(running: Running, page: Page) -> None:
    open_live(page, running.web_url)
    first = page.evaluate(READ_GRID)
    wait_for(
        lambda: any(
            row["version"] > first[name]["version"] for name, row in page.evaluate(READ_GRID).items()
        ),
        15,
        "a version to change in the grid",
    )
    page.wait_for_selector(".flash-up, .flash-down", timeout=10_000)

    matched: set[str] = set()
    mismatches: list[str] = []
    deadline = time.monotonic() + 30
    while len(matched) < 4 and time.monotonic() < deadline:
        grid = page.evaluate(READ_GRID)
        api = snapshot(running)
        for name, row in grid.items():
            if api[name]["version"] != row["version"]:
                continue
            matched.add(name)
            for field in EXACT_FIELDS:
                shown, sent = row["cells"][field], api[name][field]
                if shown != (sent if sent is not None else "—"):
                    mismatches.append(f"{name} v{row['version']} {field}: grid {shown!r}, api {sent!r}")
        time.sleep(0.2)
    assert mismatches == []
    assert len(matched) >= 4, f"grid and /api/snapshot agreed on versions of only {sorted(matched)}"
    page.screenshot(path=str(running.artifacts / "grid.png"))


def test_filter_sort_and_a_remembered_watchlist(running: Running, page: Page) -> None:
    open_live(page, running.web_url)
    rows = page.locator("[data-testid=watchlist] tbody tr")
    names = [rows.nth(i).get_attribute("data-instrument") for i in range(rows.count())]
    assert names == sorted(names), "sorted by instrument at first"

    page.keyboard.press("/")
    page.keyboard.type(names[1][:3])
    expect(rows).to_have_count(sum(1 for n in names if names[1][:3] in n))
    page.keyboard.press("Escape")
    expect(rows).to_have_count(6)

    page.get_by_role("button", name="Last").click()
    expect(page.locator("th[aria-sort=descending]")).to_have_text(re.compile("Last"))
    # One read of the DOM: the order and the values come from the same render.
    lasts = [Decimal(cell) for cell in page.locator("td[data-field=last_price]").all_inner_texts()]
    assert lasts == sorted(lasts, reverse=True)

    removed = names[0]
    page.get_by_role("button", name=f"Remove {removed}").click()
    expect(rows).to_have_count(5)
    page.reload()
    expect(page.locator("[data-testid=watchlist] tbody tr")).to_have_count(5)
    assert page.locator(f'tr[data-instrument="{removed}"]').count() == 0
    # The server rendered the remembered choice too (from the cookie), not just the browser.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    html = httpx.get(running.web_url, cookies={"tw_watchlist": cookies["tw_watchlist"]}).text
    assert f'data-instrument="{removed}"' not in html


def test_selecting_an_instrument_shows_its_chart_with_bars(running: Running, page: Page) -> None:
    open_live(page, running.web_url)
    row = page.locator("[data-testid=watchlist] tbody tr").nth(2)
    name = row.get_attribute("data-instrument")
    row.focus()
    page.keyboard.press("Enter")
    chart = page.get_by_test_id("chart")
    expect(chart).to_have_attribute("data-instrument", name or "")
    wait_for(lambda: int(chart.get_attribute("data-bars") or 0) >= 3, 20, "1 s bars on the chart")
    assert chart.locator("canvas").count() > 0
    stored = httpx.get(f"{running.api_url}/api/bars", params={"instrument": name, "interval": "1s"})
    bars_1s = stored.json()["bars"]
    assert bars_1s and bars_1s[-1]["vwap"] is not None, "stored bars carry the VWAP the chart overlays"
    page.get_by_role("button", name="1m").click()
    expect(chart).to_have_attribute("data-interval", "1m")
    wait_for(lambda: int(chart.get_attribute("data-bars") or 0) >= 1, 20, "1 min bars on the chart")
    page.get_by_role("button", name="1s").click()
    wait_for(lambda: int(chart.get_attribute("data-bars") or 0) >= 3, 20, "1 s bars again")
    page.screenshot(path=str(running.artifacts / "detail.png"))


def test_an_alert_made_in_the_page_triggers_and_notifies(running: Running, page: Page) -> None:
    open_live(page, running.web_url)
    name = page.locator("[data-testid=watchlist] tbody tr").nth(1).get_attribute("data-instrument") or ""
    form = page.get_by_test_id("alert-form")
    form.get_by_label("Instrument").select_option(name)

    # One far above the market, then cancelled from the list.
    last = Decimal(snapshot(running)[name]["last_price"])
    form.get_by_label("Direction").select_option("above")
    form.get_by_label("Price").fill(str((last * 100).quantize(Decimal("0.01"))))
    form.get_by_role("button", name="Add alert").click()
    far = page.locator("[data-testid=alert-list] li[data-status=active]")
    # Active once the processor has it: the command goes through Kafka first.
    expect(far).to_have_count(1, timeout=30_000)
    far.get_by_role("button", name=re.compile("Cancel alert")).click()
    expect(page.locator("[data-testid=alert-list] li[data-status=cancelled]")).to_have_count(
        1, timeout=20_000
    )

    # One the market is already through: the next trade at or below it crosses it.
    level = (last * Decimal("1.05")).quantize(Decimal("0.01"))
    form.get_by_label("Direction").select_option("below")
    form.get_by_label("Price").fill(str(level))
    form.get_by_role("button", name="Add alert").click()
    toast = page.get_by_test_id("toast").filter(has_text="Alert triggered")
    expect(toast).to_have_count(1, timeout=45_000)
    # The server keeps prices canonical: 211.40 comes back as 211.4.
    expect(toast).to_contain_text(f"{name} ≤ {level.normalize():f}")
    triggered = page.locator("[data-testid=alert-list] li[data-status=triggered]")
    expect(triggered).to_have_count(1)
    price = re.search(r"at ([\d.]+)", triggered.inner_text())
    assert price and Decimal(price.group(1)) <= level


def test_dashboard_api_restart_shows_reconnecting_then_resumes_without_gaps(
    running: Running, page: Page
) -> None:
    open_live(page, running.web_url)
    health = page.get_by_test_id("health")
    before = page.evaluate(READ_GRID)

    api = running.suite.processes["dashboard_api"]
    api.kill()
    api.wait()
    expect(health).to_have_attribute("data-status", "reconnecting", timeout=10_000)
    page.screenshot(path=str(running.artifacts / "reconnecting.png"))
    time.sleep(2)  # the feed goes on: these versions must be replayed on resume
    running.suite.start_service("dashboard_api")

    expect(health).to_have_attribute("data-status", "live", timeout=40_000)
    expect(health).to_have_attribute("data-reconnects", "1")
    expect(page.get_by_test_id("notice")).to_contain_text("resumed")
    wait_for(lambda: int(health.get_attribute("data-resumed") or 0) > 0, 10, "versions replayed on resume")
    after = page.evaluate(READ_GRID)
    assert all(after[name]["version"] > before[name]["version"] for name in before)
    time.sleep(1)
    assert health.get_attribute("data-gaps") == "0"


def test_with_auth_on_a_login_form_takes_a_token(running: Running, page: Page) -> None:
    answer = httpx.get(running.auth_web_url)
    assert (
        answer.status_code == 200
        and "Access token" in answer.text
        and 'data-testid="watchlist"' not in answer.text
    )

    page.goto(running.auth_web_url)
    page.get_by_label("Access token (JWT)").fill("not-a-token")
    page.get_by_role("button", name="Log in").click()
    # By id: Next.js adds a route announcer that is role="alert" too.
    expect(page.locator("#login-reason")).to_contain_text("refused")

    token = jwt.encode({"sub": "desk-7", "exp": int(time.time()) + 600}, AUTH_SECRET, algorithm="HS256")
    page.get_by_label("Access token (JWT)").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("health")).to_have_attribute("data-status", "live", timeout=20_000)
    expect(page.locator(".user")).to_have_text("desk-7")
    expect(page.locator("[data-testid=watchlist] tbody tr")).to_have_count(6)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("Access token (JWT)")).to_be_visible()
