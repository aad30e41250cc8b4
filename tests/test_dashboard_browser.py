"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

One `kvcache serve --workers 2` with an admin token, in front of the Shopify emulator,
gets traffic first (customer look-ups that miss then hit, a shop configuration, webhooks
of which one handler fails). Then one browser session logs in through the form and
checks, in order: no console error and no request to anywhere but the server, the
numbers on the page equal `/api/cache/stats` and `/api/cost`, the charts drew their
series (coloured pixels on each canvas, the axes and grid being grey), the page
refreshes by itself within 10 s (on Playwright's clock, so no wall-clock wait is
asserted), and the Replay button turns the failed delivery processed. A
screenshot is written under the test's tmp_path.

Without Chromium (`apt-get install chromium`) or Playwright the test skips, unless
KVCACHE_REQUIRE_CHROMIUM=1 (as in CI), where it fails. Playwright only drives the
browser: nothing is downloaded (never `playwright install`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from kvcache.testing import ShopifyAdminEmulator
from service import SECRET, ServeProcess, signed_headers
from webhook_handlers import DIR_ENV, read_runs

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_ENV = "KVCACHE_REQUIRE_CHROMIUM"
TOKEN = "dashboard-browser-token"
SHOP = "demo.myshopify.com"
FAILING = "order-fails-once"
#: Coloured pixels a canvas needs to count as a drawn series (one point is ~20).
MIN_COLOURED = 15
WAIT_MS = 20_000

pytestmark = pytest.mark.slow


def _playwright() -> Any:
    """The sync Playwright entry point, or skip (fail under KVCACHE_REQUIRE_CHROMIUM=1)."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {missing}")
        pytest.skip(missing)
    return sync_playwright


@dataclass
class Traffic:
    server: ServeProcess
    directory: Path
    auth: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.server.url + path, headers=self.auth, timeout=30)


def _deliver(client: httpx.Client, topic: str, payload: bytes, webhook_id: str) -> int:
    headers = signed_headers(payload, topic, SHOP, webhook_id=webhook_id)
    return client.post("/webhooks", content=payload, headers=headers).status_code


def _send_traffic(server: ServeProcess, emulator: ShopifyAdminEmulator) -> None:
    emulator.add_customer("ann@example.com", first_name="Ann")
    emulator.add_customer("bob@example.com", first_name="Bob")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        for email, times in (("ann@example.com", 4), ("bob@example.com", 2), ("no@example.com", 2)):
            for _ in range(times):
                assert client.get(
                    "/api/customers", params={"shop": SHOP, "email": email}
                ).status_code in (200, 404)
        config = client.put(f"/api/shops/{SHOP}/config", json={"shopName": "Demo"})
        assert config.status_code == 200, config.text
        for _ in range(3):
            assert client.get(f"/api/shops/{SHOP}/config").status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as hooks:
        failing = b'{"id": 1, "fail_first": true}'
        assert _deliver(hooks, "orders/create", failing, FAILING) == 500
        assert _deliver(hooks, "orders/create", b'{"id": 2}', "order-works") == 200
        assert _deliver(hooks, "orders/create", b'{"id": 2}', "order-works") == 200  # duplicate
        assert _deliver(hooks, "customers/update", b'{"id": 7}', "customer-7") == 200


def _settled(traffic: Traffic) -> dict[str, Any]:
    """/api/dashboard once both workers' history reached the database (5 s flushes)."""
    deadline = time.monotonic() + 30
    while True:
        data = traffic.get("/api/dashboard?minutes=10").json()
        delivered = sum(sum(s["counts"]) for s in data["webhooks"])
        families = {s["family"] for s in data["hitRate"]}
        if delivered == 4 and {"customer:email", "shop:config"} <= families:
            return dict(data)
        assert time.monotonic() < deadline, f"the history never showed the traffic: {data}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    directory = tmp_path_factory.mktemp("dashboard")
    env = {
        "KVCACHE_STORE": f"sqlite:///{directory}/kv.sqlite3",
        "KVCACHE_DATABASE_URL": f"sqlite+aiosqlite:///{directory}/app.db",
        "SHOPIFY_API_SECRET": SECRET,
        "KVCACHE_ADMIN_TOKEN": TOKEN,
        "KVCACHE_HANDLERS": "webhook_handlers",
        DIR_ENV: str(directory),
        "DEMO_SHOPIFY_TOKEN": "shpat_emulator",
        "KVCACHE_SHOPIFY_RETRIES": "1",
    }
    with ShopifyAdminEmulator() as emulator:
        added = subprocess.run(
            [sys.executable, "-m", "kvcache", "shop", "add", SHOP, "--token-env",
             "DEMO_SHOPIFY_TOKEN", "--admin-url", emulator.admin_url()],
            cwd=directory, env=os.environ | env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        server = ServeProcess(directory, env, workers=2).start()
        try:
            _send_traffic(server, emulator)
            yield Traffic(server, directory)
        finally:
            server.stop()


COLOURED_PIXELS = """(selector) => {
    const canvas = document.querySelector(selector + ' canvas');
    if (!canvas) return -1;
    const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let coloured = 0;
    for (let i = 0; i < data.length; i += 4) {
        const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) coloured++;
    }
    return coloured;
}"""

FIGURES = """() => [...document.querySelectorAll('[data-metric]')].map((node) => ({
    metric: node.dataset.metric, family: node.dataset.family ?? null,
    value: node.dataset.value, text: node.textContent}))"""

COST_FIGURES = """() => [...document.querySelectorAll('[data-cost]')].map((node) => ({
    path: node.dataset.cost, value: node.dataset.value, text: node.textContent}))"""


def _wait(page: Any, function: str, arg: Any = None) -> None:
    """Until `function(arg)` is true in the page. (Playwright's wait_for_function evaluates
    a string, which the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate(function, arg):
        assert time.monotonic() < deadline, f"never true in the page: {function}({arg!r})"
        page.wait_for_timeout(100)


REFRESHED = "(n) => Number(document.body.dataset.refreshes || 0) > n"
IDLE = "() => !window.kvcacheDashboard.busy && !window.kvcacheDashboard.again"
OUTCOME_IS = "([selector, outcome]) => document.querySelector(selector)?.textContent === outcome"


def _check_figures(figures: list[dict[str, Any]], stats: dict[str, Any]) -> None:
    families = {f["family"] for f in figures if f["family"] is not None}
    assert families == set(stats["by_family"]) and len(figures) == 6 + 6 * len(families)
    for figure in figures:
        source = stats if figure["family"] is None else stats["by_family"][figure["family"]]
        expected = source[figure["metric"]]
        if figure["metric"] == "hitRate":
            assert float(figure["value"]) == pytest.approx(expected, abs=1e-12), figure
            assert figure["text"] == f"{expected * 100:.1f} %", figure
        else:
            assert (int(figure["value"]), figure["text"]) == (expected, str(expected)), figure


def _cost_matches(figures: list[dict[str, Any]], cost: dict[str, Any]) -> bool:
    """Whether every cost figure on the page is the value of `cost` at its path."""
    for figure in figures:
        node: Any = cost
        for part in figure["path"].split("."):
            node = node[part]
        if isinstance(node, bool):
            if figure["value"] != str(node).lower():
                return False
        elif float(figure["value"]) != pytest.approx(node, rel=1e-12, abs=1e-12):
            return False
        elif figure["path"].endswith("_usd") and figure["text"] != f"${node:.2f}":
            return False
    return True


def test_the_dashboard_in_chromium(traffic: Traffic, tmp_path: Path) -> None:
    sync_playwright = _playwright()
    data = _settled(traffic)
    origin = traffic.server.url
    requested: list[str] = []
    outside: list[str] = []
    problems: list[str] = []
    costs: list[dict[str, Any]] = []  # what the page got from /api/cost, in order

    def route(route: Any) -> None:
        url = route.request.url
        requested.append(url)
        parts = urlsplit(url)
        if parts.scheme != "data" and f"{parts.scheme}://{parts.netloc}" != origin:
            outside.append(url)
            route.abort()
        elif parts.path == "/api/cost":
            answer = route.fetch()  # the monthly figures move as the window grows: keep each
            costs.append(answer.json() if answer.status == 200 else {"status": answer.status})
            route.fulfill(response=answer)
        else:
            route.continue_()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1300})
            # The page's timers run on Playwright's clock: moving it 10 s must refresh it.
            context.clock.install()
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: problems.extend([m.text] if m.type == "error" else []))
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

            # Without credentials: the login form, 401. A wrong token stays there.
            first = page.goto(origin + "/dashboard")
            assert first is not None and first.status == 401
            page.fill("#token", "not-the-token")
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert "Wrong token" in page.inner_text(".message")
            # The browser logs each 401 answer as an error; nothing else may be there.
            assert all("401" in text for text in problems), problems
            problems.clear()
            page.fill("#token", TOKEN)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.url == origin + "/dashboard"
            _wait(page, REFRESHED, 0)

            # The figures equal /api/cache/stats (no traffic since) on the next refresh.
            stats = traffic.get("/api/cache/stats").json()
            page.clock.pause_at(time.time() + 1)  # from here the page's time moves when told
            _wait(page, IDLE)
            seen = int(page.evaluate("document.body.dataset.refreshes"))
            page.clock.run_for(10_000)  # the page refreshes itself at least every 10 s
            _wait(page, REFRESHED, seen)
            _check_figures(page.evaluate(FIGURES), stats)
            assert stats["hits"] > 0 and stats["misses"] > 0

            # The cost figures equal the /api/cost answer the page rendered (the last one, or
            # the one before if the next is on its way); the server agrees on what it observed.
            answered = list(costs)
            shown = page.evaluate(COST_FIGURES)
            assert len(shown) == 10 and "status" not in answered[-1], (shown, answered[-1:])
            assert any(_cost_matches(shown, cost) for cost in answered[-2:]), (shown, answered)
            cost = traffic.get("/api/cost").json()
            assert cost["observed"] == answered[-1]["observed"] and cost["observed"]["reads"] > 0

            # The charts drew their series.
            assert page.evaluate(COLOURED_PIXELS, "#chart-hit-rate") >= MIN_COLOURED
            assert page.evaluate(COLOURED_PIXELS, "#chart-webhooks") >= MIN_COLOURED
            if data["ops"]:
                assert page.evaluate(COLOURED_PIXELS, "#chart-ops") >= MIN_COLOURED
            assert page.inner_text("#health").count("closed") == 1

            # Replay the failed delivery from the page: it turns processed.
            outcome = f'tr[data-webhook-id="{FAILING}"] [data-outcome]'
            assert page.inner_text(outcome) == "failed"
            page.click(f'button[data-replay="{FAILING}"]')
            _wait(page, OUTCOME_IS, [outcome, "processed"])
            assert page.locator(f'button[data-replay="{FAILING}"]').count() == 0
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()

    log = traffic.get("/api/webhooks?limit=10").json()["deliveries"]
    assert {row["webhookId"]: row["outcome"] for row in log}[FAILING] == "processed"
    runs = [kind for kind, webhook_id, *_ in read_runs(traffic.directory) if webhook_id == FAILING]
    assert runs == ["start", "fail", "start", "done"]
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert outside == [] and problems == [], (outside, problems)
    assert requested and all(url.startswith(origin + "/") for url in requested)
