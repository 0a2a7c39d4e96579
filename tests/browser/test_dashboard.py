"""The Next.js dashboard in headless Chromium against the running suite (see conftest.py)."""

from __future__ import annotations

import re
import time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import AUTH_SECRET, Running
from tests.browser.grid import GridRows
from tests.support import wait_for

pytestmark = pytest.mark.browser

# The grid's cells that show one of the state's prices at its instrument's decimals (the API
# sends canonical decimals, 211.4; the grid shows 211.40 when details[].decimals is 2).
PRICE_FIELDS = (
    "last_price",
    "bid_price",
    "ask_price",
    "spread",
    "previous_close",
    "session_open",
    "session_high",
    "session_low",
)
# Reads the grid in one go: instrument → version and the text of every cell.
READ_GRID = """() => {
  const rows = [...document.querySelectorAll('[data-testid=watchlist] tbody tr')];
  const cellsOf = (row) => Object.fromEntries(
    [...row.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.textContent]));
  return Object.fromEntries(rows.map((row) => [
    row.dataset.instrument, {version: Number(row.dataset.version), cells: cellsOf(row)}]));
}"""


def snapshot(running: Running) -> dict[str, dict[str, Any]]:
    states = httpx.get(f"{running.api_url}/api/snapshot").json()["states"]
    return {state["instrument"]: state for state in states}


def instrument_details(running: Running) -> dict[str, dict[str, Any]]:
    """symbol → its entry of /api/instruments `details` (the master's, with decimals and status)."""
    body = httpx.get(f"{running.api_url}/api/instruments").json()
    return {detail["symbol"]: detail for detail in body.get("details", [])}


def fraction_digits(text: str) -> int:
    return len(text.partition(".")[2])


def at_decimals(value: str, decimals: int) -> str:
    """A decimal as the grid shows a price: exactly `decimals` decimals, ties away from zero
    (ROUND_HALF_UP), and zero without a sign."""
    shown = Decimal(value).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{shown if shown else abs(shown):f}"


def signed_at_decimals(value: str, decimals: int) -> str:
    """A change as the grid shows it: at `decimals`, always signed ("+0.00" when unchanged)."""
    text = at_decimals(value, decimals)
    return text if text.startswith("-") else f"+{text}"


def price_cell_problem(shown: str, sent: str | None, decimals: int | None) -> str | None:
    """Why a grid cell does not show the API's decimal `sent` as the desk reads it, or None: the
    same number, at the instrument's decimals (without details: the API's text as it is)."""
    if sent is None:
        return None if shown == "—" else "should be a dash"
    if decimals is None:
        return None if shown == sent else "should be the API's text (no details)"
    try:
        same = Decimal(shown) == Decimal(sent)
    except InvalidOperation:
        return "not a number"
    if not same:
        return "not the same number"
    return None if shown == at_decimals(sent, decimals) else f"not at {decimals} decimals"


def open_live(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_test_id("health")).to_have_attribute("data-status", "live", timeout=20_000)


def test_first_paint_is_the_server_rendered_snapshot(running: Running) -> None:
    decimals = {name: detail["decimals"] for name, detail in instrument_details(running).items()}
    html = httpx.get(running.web_url, timeout=10).text
    after = snapshot(running)
    parser = GridRows()
    parser.feed(html)
    assert sorted(parser.rows) == sorted(after), "the HTML lists every instrument"
    assert decimals, "/api/instruments has details"
    for name, (version, cells) in parser.rows.items():
        assert 1 <= version <= after[name]["version"], name
        assert cells["last_price"] not in ("", "—"), f"{name} rendered without a price"
        assert Decimal(cells["last_price"]) > 0
        # The server fetched the details too: the first HTML already has fixed decimals.
        if name in decimals:
            assert fraction_digits(cells["last_price"]) == decimals[name], (name, cells["last_price"])
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
    decimals = {name: detail["decimals"] for name, detail in instrument_details(running).items()}
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
            for field in PRICE_FIELDS:
                shown, sent = row["cells"][field], api[name].get(field)
                problem = price_cell_problem(shown, sent, decimals.get(name))
                if problem:
                    version = row["version"]
                    mismatches.append(f"{name} v{version} {field}: grid {shown!r}, api {sent!r}: {problem}")
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


def on_tick(value: Decimal, tick: Decimal) -> Decimal:
    """`value` rounded to a whole number of ticks (the page refuses a level off the grid)."""
    return (value / tick).to_integral_value(rounding=ROUND_HALF_UP) * tick


def test_an_alert_made_in_the_page_triggers_and_notifies(running: Running, page: Page) -> None:
    open_live(page, running.web_url)
    name = page.locator("[data-testid=watchlist] tbody tr").nth(1).get_attribute("data-instrument") or ""
    detail = instrument_details(running).get(name)
    tick = Decimal(detail["tick_size"]) if detail else Decimal("0.01")
    form = page.get_by_test_id("alert-form")
    form.get_by_label("Instrument").select_option(name)

    # One far above the market, then cancelled from the list.
    last = Decimal(snapshot(running)[name]["last_price"])
    form.get_by_label("Direction").select_option("above")
    form.get_by_label("Price").fill(f"{on_tick(last * 100, tick):f}")
    form.get_by_role("button", name="Add alert").click()
    far = page.locator("[data-testid=alert-list] li[data-status=active]")
    # Active once the processor has it: the command goes through Kafka first.
    expect(far).to_have_count(1, timeout=30_000)
    far.get_by_role("button", name=re.compile("Cancel alert")).click()
    expect(page.locator("[data-testid=alert-list] li[data-status=cancelled]")).to_have_count(
        1, timeout=20_000
    )

    # One the market is already through: the next trade at or below it crosses it.
    level = on_tick(last * Decimal("1.05"), tick)
    form.get_by_label("Direction").select_option("below")
    form.get_by_label("Price").fill(f"{level:f}")
    form.get_by_role("button", name="Add alert").click()
    toast = page.get_by_test_id("toast").filter(has_text="Alert triggered")
    expect(toast).to_have_count(1, timeout=45_000)
    # The server keeps prices canonical (211.40 comes back as 211.4); the page shows them at the
    # instrument's decimals, as in the grid.
    shown = at_decimals(f"{level:f}", detail["decimals"]) if detail else f"{level.normalize():f}"
    expect(toast).to_contain_text(f"{name} ≤ {shown} (traded ")
    triggered = page.locator("[data-testid=alert-list] li[data-status=triggered]")
    expect(triggered).to_have_count(1)
    price = re.search(r"at ([\d.]+)", triggered.inner_text())
    assert price and Decimal(price.group(1)) <= level


def test_prices_at_instrument_precision_and_change_from_previous_close(running: Running, page: Page) -> None:
    decimals = {name: detail["decimals"] for name, detail in instrument_details(running).items()}
    assert decimals, "/api/instruments has details"
    open_live(page, running.web_url)

    # A last price whose canonical text is shorter than its instrument's decimals (229.8, 6050.5,
    # 230: prices move by cents or quarters, so one shows up within seconds), read from the grid
    # and from the API at the same version.
    found: tuple[str, dict[str, Any], dict[str, Any]] | None = None
    deadline = time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        grid = page.evaluate(READ_GRID)
        api = snapshot(running)
        for name, row in grid.items():
            state = api.get(name)
            if state is None or name not in decimals or state["version"] != row["version"]:
                continue
            if state["last_price"] is not None and fraction_digits(state["last_price"]) < decimals[name]:
                found = (name, row["cells"], state)
                break
        time.sleep(0.1)
    assert found, "no last price shorter than its decimals at a version the grid and the API shared"
    name, cells, state = found
    places = decimals[name]

    # Padded, not rounded: the same number, at the instrument's decimals.
    assert cells["last_price"] != state["last_price"], (name, cells["last_price"])
    assert fraction_digits(cells["last_price"]) == places
    assert Decimal(cells["last_price"]) == Decimal(state["last_price"])
    assert cells["last_price"] == at_decimals(state["last_price"], places)

    # The change is from the previous close when there is one (else from this session's open, and the
    # page says so), signed at the instrument's decimals: "+0.00" when unchanged, never "+0".
    basis = state["change_basis"]
    assert basis in ("previous_close", "session_open"), basis
    reference = state["previous_close"] if basis == "previous_close" else state["session_open"]
    assert reference is not None and state["change"] is not None, state
    assert Decimal(state["change"]) == Decimal(state["last_price"]) - Decimal(reference)
    assert cells["change"] == signed_at_decimals(state["change"], places), (name, cells, state)
    previous_close = state["previous_close"]
    expected_close = "—" if previous_close is None else at_decimals(previous_close, places)
    assert cells["previous_close"] == expected_close, (name, cells, state)
    assert re.fullmatch(r"[+-]\d+\.\d{2}%", cells["change_pct"]), cells["change_pct"]

    change = page.locator(f'tr[data-instrument="{name}"] td[data-field=change]')
    expect(change).to_have_attribute("data-basis", basis)
    if basis == "session_open":
        expect(change).to_have_attribute("title", re.compile("from this session's open"))
    else:
        assert change.get_attribute("title") is None
    page.screenshot(path=str(running.artifacts / "precision.png"))


def test_instrument_names_market_status_and_search_by_name(running: Running, page: Page) -> None:
    details = instrument_details(running)
    open_live(page, running.web_url)
    shown = [name for name in sorted(details) if page.locator(f'tr[data-instrument="{name}"]').count()]
    assert shown, "the grid shows instruments of the master"
    soon = time.time_ns() + 70 * 1_000_000_000
    for name in shown:
        detail = details[name]
        row = page.locator(f'tr[data-instrument="{name}"]')
        expect(row.locator(".instrument-name")).to_have_text(detail["name"])
        # Unless the status is about to change while we look (the page follows within seconds).
        if not 0 < detail["status_until_ns"] < soon:
            expect(row.locator("[data-field=market_status]")).to_have_attribute(
                "data-status", detail["market_status"]
            )

    # Search by name, case-insensitively, among the instruments not on the watchlist.
    symbol = shown[0]
    label = f"{symbol} — {details[symbol]['name']}"
    page.get_by_role("button", name=f"Remove {symbol}").click()
    expect(page.locator(f'tr[data-instrument="{symbol}"]')).to_have_count(0)
    add = page.get_by_label("Add instrument")
    add.fill(details[symbol]["name"].split()[0].lower())
    options = "#known-instruments option"
    wait_for(
        lambda: label in page.eval_on_selector_all(options, "found => found.map((option) => option.value)"),
        5,
        f"{label!r} among the suggestions",
    )
    add.fill(label)
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(f'tr[data-instrument="{symbol}"]')).to_have_count(1)
    expect(add).to_have_value("")


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
