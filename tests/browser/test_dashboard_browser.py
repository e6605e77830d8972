"""A person at the dashboard, in a real browser: counts, a dead letter's error, a redrive after the fix,
and a cross-site page that tries to drive the dashboard and is refused.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from .dashboard_kit import enqueue, serve, stats, wait_for


@pytest.fixture
def server(tmp_path):
    running = serve(tmp_path).start()
    running.tmp = tmp_path
    try:
        yield running
    finally:
        running.stop()


def test_see_counts_read_the_error_fix_and_redrive(server, page):
    for n in range(3):
        enqueue(server.url, {"type": "dash.ok", "payload": {"order": n}})
    broken = enqueue(server.url, {"type": "dash.fragile", "payload": {"order": 42}})
    wait_for(lambda: stats(server.url)["dead_letter"] == 1, what="the fragile message dead-lettered")

    page.goto(server.url + "/dashboard")
    assert page.locator('[data-stat="dead_letter"]').inner_text() == "1"
    assert page.locator('[data-stat="visible"]').inner_text() == "0"
    assert "dash.ok" in page.locator("table.outcomes").inner_text()

    page.click("a.count.dead_letter")
    selected = page.locator("[data-needs-selection]")
    assert selected.is_disabled()  # the script: nothing ticked, nothing to redrive
    page.check("[data-select-all]")
    assert selected.inner_text() == "Redrive selected (1)" and selected.is_enabled()
    page.click(f'a.message-link[href*="{broken}"]')
    assert "inventory service offline while reserving order 42" in page.locator(".last-error").inner_text()
    assert "InventoryOffline" in page.locator("pre.traceback").inner_text()

    (server.tmp / "fixed").write_text("")  # the fault is fixed
    page.click("#redrive")
    assert "1 message(s) sent back to the queue." in page.locator(".notice").inner_text()
    handled = server.tmp / "fixed.handled"
    wait_for(lambda: handled.exists() and broken in handled.read_text().split(), what="the redriven message handled")
    wait_for(lambda: stats(server.url)["dead_letter"] == 0, what="an empty dead-letter queue")

    page.goto(server.url + "/dashboard")
    row = page.locator("table.outcomes tr", has_text="dash.fragile")
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "1", cells  # succeeded once, after the redrive
    assert page.locator('[data-stat="dead_letter"]').inner_text() == "0"


def test_a_page_of_another_site_cannot_post_to_the_dashboard(server, page):
    broken = enqueue(server.url, {"type": "dash.fragile", "payload": {"order": 1}})
    wait_for(lambda: stats(server.url)["dead_letter"] == 1, what="a dead letter")
    page.goto(server.url + "/dashboard/messages?state=dead_letter")
    token = page.locator('meta[name="csrf"]').get_attribute("content")  # even the right token does not help

    attack = (
        "<!doctype html><title>cute cats</title>"
        f'<form id="f" method="post" action="{server.url}/dashboard/actions/purge">'
        f'<input name="csrf" value="{token}"><input name="confirm" value="purge"></form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(attack)))
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda response: response.url.endswith("/dashboard/actions/purge")) as answer:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert answer.value.status == 403
        page.wait_for_url("**/dashboard/actions/purge")
        assert "refused" in page.locator(".refusal").inner_text()
    finally:
        evil.shutdown()
        evil.server_close()
        thread.join(10)
    assert stats(server.url)["dead_letter"] == 1  # nothing was purged
    page.goto(f"{server.url}/dashboard/message?state=dead_letter&id={broken}")
    assert page.locator("h1").inner_text().startswith("Message")
