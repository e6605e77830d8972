"""letsgo-stripe end to end: a signed webhook POSTed to a real ``serve`` process is handled."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from host.testing import write_distribution
from letsgo_stripe.testing import FakeStripeApi, signature_header, thin_notification

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "plugins" / "letsgo_stripe" / "tests" / "fixtures" / "stripe"
TEST_SECRET = "whsec_e2e_test_0c1d2e3f4a5b6c7d"
LIVE_SECRET = "whsec_e2e_live_7d6c5b4a3f2e1d0c"
WAIT_SECONDS = 30

SINK = '''
import json, os
from host import hookimpl

@hookimpl
def letsgo_notify(notification):
    with open(os.environ["STRIPE_E2E_NOTIFICATIONS"], "a") as out:
        out.write(json.dumps(notification.text) + "\\n")
'''


@pytest.fixture
def server(tmp_path):
    """A ``python server.py`` subprocess on a free port, with a file-backed notification sink."""
    with running_server(tmp_path) as running:
        yield running


@contextlib.contextmanager
def running_server(tmp_path, **extra_env: str):
    """Run ``server.py`` with the Stripe secrets and ``extra_env``; yield its URL, notifications file and log."""
    site = tmp_path / "site"
    write_distribution(site, "stripe-e2e-sink", "stripe_e2e_sink", SINK)
    notifications = tmp_path / "notifications.jsonl"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("LETSGO_", "PORT"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")])),
        LETSGO_WORKER_PLUGINS="letsgo_stripe,stripe_e2e_sink",
        LETSGO_STRIPE_TEST_WEBHOOK_KEY=TEST_SECRET,
        LETSGO_STRIPE_LIVE_WEBHOOK_KEY=LIVE_SECRET,
        STRIPE_E2E_NOTIFICATIONS=str(notifications),
        **extra_env,
    )
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "--port", "0", "--db", str(tmp_path / "worker.db")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump():
        for line in process.stderr:
            log.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = None
        deadline = time.monotonic() + WAIT_SECONDS
        while url is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            if "listening on " in line:
                url = line.rsplit("listening on ", 1)[1].strip()
        assert url, "server did not start:\n" + "".join(log)
        yield url, notifications, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(notifications: Path, count: int, log: list[str]) -> list[str]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        texts = [json.loads(line) for line in notifications.read_text().splitlines()] if notifications.exists() else []
        if len(texts) >= count:
            return texts
        time.sleep(0.05)
    raise AssertionError(f"expected {count} notification(s); server log:\n" + "".join(log))


def wait_until_drained(url: str, log: list[str]) -> None:
    """Wait until the server's queue holds no message (every one was handled and deleted)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            counts = json.loads(response.read())["queue"]
        if counts["visible"] + counts["in_flight"] + counts["waiting"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the queue did not drain; server log:\n" + "".join(log))


def test_stripe_listen_style_delivery_to_a_real_server(server):
    url, notifications, log = server
    paid = (FIXTURES / "invoice.paid.with-subscription.2020-03-02.json").read_bytes()
    unhandled = (FIXTURES / "charge.succeeded.unhandled-type.json").read_bytes()

    # Refused: nothing is enqueued, so nothing is ever notified for these.
    assert post(f"{url}/stripe/webhook", paid, {"Stripe-Signature": signature_header(paid, "whsec_wrong")})[0] == 400
    assert post(f"{url}/stripe/webhook", paid, {})[0] == 400

    status, answer = post(f"{url}/stripe/webhook", paid, {"Stripe-Signature": signature_header(paid, TEST_SECRET)})
    assert (status, answer["received"], answer["stripeMode"]) == (200, True, "TEST")
    assert wait_for(notifications, 1, log) == [
        ":boom::moneybag: [TEST] You've got paid *USD 0.00*\n*Subscription Id:* sub_JsuPyCPhXWfZar\n*Tenant Id:* unknown"
    ]

    status, answer = post(f"{url}/stripe/webhook", unhandled, {"Stripe-Signature": signature_header(unhandled, LIVE_SECRET)})
    assert (status, answer["stripeMode"]) == (200, "LIVE")
    texts = wait_for(notifications, 2, log)
    assert texts[1] == ":credit_card: [LIVE] Worker received an unhandled Stripe event: charge.succeeded"

    # Stripe resends the paid event: the server's SQLite idempotency store keeps it from notifying twice.
    assert post(f"{url}/stripe/webhook", paid, {"Stripe-Signature": signature_header(paid, TEST_SECRET)})[0] == 200
    wait_until_drained(url, log)
    texts = wait_for(notifications, 2, log)
    assert sum("You've got paid" in text for text in texts) == 1

    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert health["queue"]["dead_letters"] == 0
    logged = "".join(log)
    assert TEST_SECRET not in logged and LIVE_SECRET not in logged


def test_a_thin_event_through_stripe_listen_style_delivery_is_fetched_and_handled(tmp_path):
    """``stripe listen --thin-events ... --forward-thin-to``: the server fetches the event and invoice from the API."""
    invoice = json.loads((FIXTURES / "invoice.paid.with-subscription.2020-03-02.json").read_text())["data"]["object"]
    invoice = {**invoice, "amount_paid": 1999}  # what the API says now
    with FakeStripeApi() as api:
        api.put(invoice)
        thin = thin_notification("v1.invoice.paid", invoice)
        api.put_thin_event(thin)
        env = {"LETSGO_STRIPE_API_BASE": api.url, "LETSGO_STRIPE_TEST_API_KEY": "sk_test_e2e_0a1b2c3d"}
        with running_server(tmp_path, **env) as (url, notifications, log):
            body = json.dumps(thin, indent=2).encode()
            status, answer = post(f"{url}/stripe/webhook", body, {"Stripe-Signature": signature_header(body, TEST_SECRET)})
            assert (status, answer["stripeMode"]) == (200, "TEST")
            assert wait_for(notifications, 1, log) == [
                ":boom::moneybag: [TEST] You've got paid *USD 19.99*\n*Subscription Id:* sub_JsuPyCPhXWfZar\n*Tenant Id:* unknown"
            ]
            # Resent: deduplicated by event id, fetched no more than it needs.
            assert post(f"{url}/stripe/webhook", body, {"Stripe-Signature": signature_header(body, TEST_SECRET)})[0] == 200
            wait_until_drained(url, log)
            assert len(wait_for(notifications, 1, log)) == 1
    assert ("GET", f"/v2/core/events/{thin['id']}", "sk_test_e2e_0a1b2c3d") in api.requests
    assert ("GET", f"/v1/invoices/{invoice['id']}", "sk_test_e2e_0a1b2c3d") in api.requests
