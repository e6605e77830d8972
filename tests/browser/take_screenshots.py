"""Take the dashboard's screenshots for the docs (``make screenshots``): a real ``serve`` with a shop's
plugin, a realistic queue (work waiting behind a slow report, delayed reminders, failed invoices in
the dead-letter queue, a rejected unknown type), photographed by headless chromium into ``docs/img/``.

Run from the repository's root: ``.venv/bin/python tests/browser/take_screenshots.py`` (what
``make screenshots`` does; about three minutes, as the outcomes chart needs a few minutes of work).
Not a test: pytest does not collect it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from browser.dashboard_kit import enqueue, stats, wait_for  # noqa: E402
from host.testing import write_distribution  # noqa: E402
from reliability.reliability_kit import Server, clean_env  # noqa: E402

SHOP_PLUGIN = '''
import time

from pydantic import BaseModel

from host import hookimpl


class Order(BaseModel):
    order_id: str
    total_cents: int


class Invoice(BaseModel):
    invoice_id: str
    email: str


class Report(BaseModel):
    month: str


class SmtpRefused(Exception):
    pass


def new_order(message, ctx):
    pass


def send_invoice(message, ctx):
    if message.payload.email.endswith("@example.invalid"):
        raise SmtpRefused(f"550 5.1.1 mailbox unavailable: {message.payload.email}")


def build_report(message, ctx):
    time.sleep(30)


@hookimpl
def letsgo_register_messages(register):
    register("shop:order:new", new_order, payload=Order, description="Records a new order")
    register("shop:invoice:send", send_invoice, payload=Invoice, description="Emails an invoice")
    register("shop:report:build", build_report, payload=Report, description="Builds the monthly sales report")
'''


def main() -> int:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    # A fixed folder, so that the queue's name in the pages' header reads like a real deployment's.
    tmp = Path("/tmp/acme-shop")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / ".letsgo").mkdir(parents=True)
    try:
        write_distribution(tmp / "plugins", "acme-shop", "acme_shop", SHOP_PLUGIN, version="1.4.2")
        env = clean_env(
            PYTHONPATH=str(tmp / "plugins"), LETSGO_WORKER_PLUGINS="acme_shop,letsgo_slack,letsgo_stripe,example_orders",
            LETSGO_WORKER_MAX_RECEIVE_COUNT="3", LETSGO_WORKER_BACKOFF_BASE_SECONDS="0",
            LETSGO_WORKER_BACKOFF_MAX_SECONDS="0", LETSGO_WORKER_CONCURRENCY="1", LETSGO_WORKER_BATCH_SIZE="1",
            LETSGO_WORKER_SCHEDULE="cron(0 9 ? * MON-FRI *)", LETSGO_WORKER_SCHEDULE_TIMEZONE="Europe/Paris",
            LETSGO_SLACK_URL="https://hooks.slack.com/services/T0/B0/not-shown",
        )
        with Server(tmp / ".letsgo" / "worker.db", tmp / "serve.log", env) as server:
            fill(server.url)
            shoot(server.url, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote the screenshots in {out}")
    return 0


def fill(url: str) -> None:
    """Three minutes of a shop's work: orders, invoices (some to dead mailboxes), one unknown type, then a backlog."""
    from browser.dashboard_kit import request

    for wave, (orders, invoices) in enumerate(((25, 3), (40, 6), (15, 2))):
        for n in range(orders):
            enqueue(url, {"type": "shop:order:new", "payload": {"order_id": f"ord_{wave}{n:03}", "total_cents": 1999 + 100 * n}})
        for n in range(invoices):
            email = f"customer{wave}{n}@example.invalid" if n % 3 == 0 else f"customer{wave}{n}@example.com"
            enqueue(url, {"type": "shop:invoice:send", "payload": {"invoice_id": f"inv_{wave}{n:03}", "email": email}})
        if wave == 1:
            enqueue(url, {"type": "shop:legacy:sync", "payload": {"since": "2026-11-01"}})
            enqueue(url, {"type": "shop:order:new", "payload": {"order_id": "ord_broken"}})
        if wave < 2:
            time.sleep(65)  # the next wave lands in another minute of the chart
    wait_for(lambda: stats(url)["dead_letter"] >= 5, timeout=120, what="the dead letters")
    for month in ("2026-09", "2026-10", "2026-11") * 4:
        enqueue(url, {"type": "shop:report:build", "payload": {"month": month}})
    for n in range(4):
        body = json.dumps({"type": "shop:invoice:send", "payload": {"invoice_id": f"inv_r{n}", "email": "x@example.com"},
                           "delaySeconds": 900})
        request(url + "/", method="POST", body=body.encode(), headers={"Content-Type": "application/json"})
    wait_for(lambda: stats(url)["in_flight"] >= 1, timeout=60, what="a report in flight")
    time.sleep(3)  # the oldest waiting message has waited a little


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/dashboard")
            page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
            page.goto(url + "/dashboard/messages?state=dead_letter")
            page.screenshot(path=str(out / "dashboard-messages.png"), full_page=True)
            page.click("table.messages tbody tr:has-text('shop:invoice:send') a.message-link")
            page.screenshot(path=str(out / "dashboard-message.png"), full_page=True)
            page.goto(url + "/dashboard/plugins")
            page.click("details#type-shop\\:invoice\\:send summary")
            page.screenshot(path=str(out / "dashboard-plugins.png"), full_page=True)
            page.goto(url + "/dashboard/schedules")
            page.screenshot(path=str(out / "dashboard-schedules.png"), full_page=True)
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
