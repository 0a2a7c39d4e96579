"""One running suite for every browser test in a package: the five services fed by the
simulator, dashboard_api a second time with auth on, and a Next.js server for each, all on this
run's own topics, Redis prefix and PostgreSQL schema. Chromium is the system's (Debian),
driven by Playwright; screenshots go to .local/artifacts/browser/ (or $TAPEWIRE_ARTIFACTS_DIR).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support import answers, stop_and_show, wait_for
from tools.devstack import ensure_chromium
from tools.isolation import free_port, own_service_env
from tools.suite import ROOT, Suite, prepare

AUTH_SECRET = "browser-test-secret-0123456789abcdef"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Running:
    suite: Suite
    api_url: str
    web_url: str
    auth_web_url: str
    artifacts: Path


@pytest.fixture(scope="package")
def running(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    unique = uuid.uuid4().hex[:10]
    api_port, auth_api_port, web_port, auth_web_port = (free_port() for _ in range(4))
    with own_service_env(
        stack_env,
        unique,
        DASHBOARD_API_PORT=str(api_port),
        # Few instruments at a modest rate: every one trades a few times a second.
        INGESTER_INSTRUMENTS="6",
        INGESTER_RATE="30",
        INGESTER_TRADE_RATIO="0.5",
        INGESTER_SEED="7",
    ) as (env, _topics):
        prepare(env)
        suite = Suite(env=env, log_dir=tmp_path_factory.mktemp("logs")).start()
        suite.start_service(
            "dashboard_api",
            {"DASHBOARD_API_PORT": str(auth_api_port), "AUTH_HS256_SECRET": AUTH_SECRET},
            instance="dashboard_api-auth",
        )
        api_url, auth_api_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{auth_api_port}"
        suite.start_dashboard(web_port, api_url)
        suite.start_dashboard(auth_web_port, auth_api_url, instance="dashboard-auth")
        artifacts = Path(os.environ.get("TAPEWIRE_ARTIFACTS_DIR", ROOT / ".local" / "artifacts")) / "browser"
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            for url in (f"{api_url}/readyz", f"{auth_api_url}/readyz", f"http://127.0.0.1:{web_port}/"):
                wait_for(lambda url=url: answers(url), 60, f"{url} to answer 200")
            # A traded price in Redis for each of the 6 before the first page is rendered (the
            # instruments themselves are listed as soon as the simulator publishes its universe).
            wait_for(lambda: traded(api_url) == 6, 60, "a trade of each of the 6 instruments")
            # And their entries in PostgreSQL (history_writer's), which the first paint formats with.
            wait_for(lambda: described(api_url) == 6, 60, "the 6 instruments' details")
            yield Running(
                suite, api_url, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{auth_web_port}", artifacts
            )
        finally:
            stop_and_show(suite)


def traded(api_url: str) -> int:
    states = httpx.get(f"{api_url}/api/snapshot").json()["states"]
    return sum(1 for state in states if state["last_price"])


def described(api_url: str) -> int:
    return len(httpx.get(f"{api_url}/api/instruments").json()["details"])


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_FLAGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"errors in the page: {errors}"
