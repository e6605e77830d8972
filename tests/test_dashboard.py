"""The dashboard of ``serve``: its pages, its actions and what keeps it safe, against a real server.

Each server is a real ``letsgo-worker serve`` subprocess with a plugin whose
handler fails until its fault is fixed; requests are real HTTP, made as a
browser would (forms, Origin, Sec-Fetch-Site, cookies) or a script would (Bearer).
"""

from __future__ import annotations

import re

import pytest

from browser.dashboard_kit import csrf_token, enqueue, get, post_form, request, serve, stats, wait_for
from host.local.routes import Headers, Request
from host.ops import dashboard
from host.ops.security import Guard
from host.ops.web import OpsWeb

SLACK_MARK = "https://hooks.slack.com/services/T000/B000/slack-url-must-not-show"
WEBHOOK_MARK = "whsec_webhook-secret-must-not-show"
TOKEN = "dashboard-token-for-tests"


def dead_lettered(url: str, count: int) -> None:
    wait_for(lambda: stats(url)["dead_letter"] >= count, what=f"{count} dead letter(s)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    running = serve(tmp, LETSGO_WORKER_SCHEDULE="cron(0 9 * * ? *)", LETSGO_WORKER_SCHEDULE_TIMEZONE="Europe/Paris",
                    LETSGO_WORKER_PLUGINS="dashfault,letsgo_slack,letsgo_stripe",
                    LETSGO_SLACK_URL=SLACK_MARK, LETSGO_STRIPE_TEST_WEBHOOK_KEY=WEBHOOK_MARK).start()
    running.tmp = tmp
    try:
        yield running
    finally:
        running.stop()


def test_overview_shows_counts_outcomes_and_plugins(server):
    enqueue(server.url, {"type": "dash.ok", "payload": {"order": 1}})
    enqueue(server.url, {"type": "no.such.type", "payload": {}})
    dead_lettered(server.url, 1)
    wait_for(lambda: "dash.ok" in get(server.url + "/dashboard")[1],
             what="dash.ok in the outcomes")
    status, html, headers = get(server.url + "/dashboard")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert re.search(r'data-stat="dead_letter">\s*[1-9]', html)
    assert "no.such.type" in html and "<svg" in html  # the rejected type, and its chart
    assert "Every plugin loaded" in html
    # The page loads only its own assets: nothing from a CDN.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for asset in ("dashboard.css", "dashboard.js", "favicon.svg"):
        assert get(server.url + "/dashboard/static/" + asset)[0] == 200


def test_messages_list_search_and_detail_with_traceback(server):
    message_id = enqueue(server.url, {"type": "dash.fragile", "payload": {"order": 41}})
    wait_for(lambda: get(server.url + "/dashboard/message?state=dead_letter&id=" + message_id)[0] == 200,
             what="the fragile message in the dead-letter queue")
    status, html, _ = get(server.url + "/dashboard/messages?state=dead_letter&type=dash.fragile")
    assert status == 200 and message_id[:18] in html
    found = get(server.url + "/dashboard/messages?state=dead_letter&text=order%22%3A+41")[1]
    assert found.count('class="message-link"') == 1 and message_id[:18] in found
    assert message_id[:18] not in get(server.url + "/dashboard/messages?state=dead_letter&type=dash.ok")[1]
    status, html, _ = get(server.url + "/dashboard/message?state=dead_letter&id=" + message_id)
    assert "inventory service offline while reserving order 41" in html
    assert "InventoryOffline" in html and "reserve_stock" in html  # the plugin's frame in the traceback
    assert 'class="receive-count">2<' in html
    assert "&#34;order&#34;: 41" in html or "&quot;order&quot;: 41" in html  # the body, escaped


def test_bad_requests_are_4xx_pages_never_5xx(server):
    assert get(server.url + "/dashboard/messages?state=bogus")[0] == 400
    assert get(server.url + "/dashboard/messages?offset=-3")[0] == 400
    assert get(server.url + "/dashboard/message?state=dead_letter&id=nope")[0] == 404
    assert get(server.url + "/dashboard/message?state=dead_letter")[0] == 400
    assert get(server.url + "/dashboard/nowhere")[0] == 404
    assert get(server.url + "/dashboard/static/../web.py")[0] == 404
    assert request(server.url + "/dashboard", method="DELETE")[0] == 405
    status, text, headers = get(server.url + "/dashboard/nowhere", Accept="application/json")
    assert status == 404 and "error" in text and headers["Content-Type"] == "application/json"
    page = get(server.url + "/dashboard/messages?state=dead_letter")[1]
    status, _, _ = post_form(server.url + "/dashboard/actions/redrive", {"csrf": csrf_token(page), "ids": "no-such-id"})
    assert status == 404
    assert post_form(server.url + "/dashboard/actions/explode", {"csrf": csrf_token(page)})[0] == 404


def test_actions_refuse_other_sites_and_missing_csrf(server):
    message_id = enqueue(server.url, {"type": "dash.fragile", "payload": {"order": 7}})
    wait_for(lambda: get(server.url + f"/dashboard/message?state=dead_letter&id={message_id}")[0] == 200, what="dead letter")
    page = get(server.url + "/dashboard/messages?state=dead_letter")[1]
    token = csrf_token(page)
    action = server.url + "/dashboard/actions/delete"
    fields = {"csrf": token, "state": "dead_letter", "ids": message_id}
    for headers in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        status, text, _ = post_form(action, fields, headers)
        assert status == 403, (headers, status)
        assert "refused" in text
    assert post_form(action, {**fields, "csrf": "0" * 64})[0] == 403
    assert post_form(action, {"state": "dead_letter", "ids": message_id})[0] == 403
    assert get(server.url + f"/dashboard/message?state=dead_letter&id={message_id}")[0] == 200  # still there
    host = server.url.removeprefix("http://")
    status, _, headers = post_form(action, fields, {"Origin": server.url, "Sec-Fetch-Site": "same-origin", "Host": host})
    assert status == 303 and headers["Location"].startswith("/dashboard/messages?state=dead_letter&done=delete&count=1")
    assert get(server.url + f"/dashboard/message?state=dead_letter&id={message_id}")[0] == 404


def test_redrive_selected_after_the_fix_and_purge_with_confirmation(server):
    ids = [enqueue(server.url, {"type": "dash.fragile", "payload": {"order": n}}) for n in (100, 101, 102)]
    wait_for(lambda: all(get(server.url + f"/dashboard/message?state=dead_letter&id={i}")[0] == 200 for i in ids),
             what="three dead letters")
    token = csrf_token(get(server.url + "/dashboard/messages?state=dead_letter")[1])
    (server.tmp / "fixed").write_text("")
    try:
        status, _, headers = post_form(server.url + "/dashboard/actions/redrive", [("csrf", token), ("ids", ids[0]), ("ids", ids[1])])
        assert status == 303 and "count=2" in headers["Location"]
        assert "2 message(s) sent back" in get(server.url + headers["Location"])[1]
        handled = server.tmp / "fixed.handled"
        wait_for(lambda: handled.exists() and set(ids[:2]) <= set(handled.read_text().split()), what="the two handled")
    finally:
        (server.tmp / "fixed").unlink()
    confirm = get(server.url + "/dashboard/purge")[1]
    assert "Yes, purge" in confirm
    assert post_form(server.url + "/dashboard/actions/purge", {"csrf": token})[0] == 400  # not confirmed
    assert get(server.url + f"/dashboard/message?state=dead_letter&id={ids[2]}")[0] == 200
    status, _, headers = post_form(server.url + "/dashboard/actions/purge", {"csrf": token, "confirm": "purge"})
    assert status == 303 and "done=purge" in headers["Location"]
    assert stats(server.url)["dead_letter"] == 0
    status, text, _ = post_form(server.url + "/dashboard/actions/redrive", {"csrf": token, "all": "1"},
                                {"Accept": "application/json"})
    assert status == 200 and '"count": 0' in text


def test_plugins_and_types_show_versions_hooks_schemas_and_never_a_secret(server):
    status, html, _ = get(server.url + "/dashboard/plugins")
    assert status == 200
    assert "dash-fault" in html and "2.3.0" in html and "letsgo_register_messages" in html
    assert "dash.fragile" in html and "&#34;order&#34;" in html  # the payload's JSON Schema
    assert "LETSGO_SLACK_URL" in html and "&lt;secret&gt;" in html
    for page in ("/dashboard", "/dashboard/plugins", "/dashboard/schedules", "/dashboard/messages", "/metrics"):
        text = get(server.url + page)[1]
        assert SLACK_MARK not in text and "slack-url-must-not-show" not in text, page
        assert WEBHOOK_MARK not in text, page


def test_schedules_show_next_fires_in_the_zone_and_in_utc(server):
    status, html, _ = get(server.url + "/dashboard/schedules")
    assert status == 200
    assert "cron(0 9 * * ? *)" in html and "Europe/Paris" in html
    assert re.search(r"\d{4}-\d\d-\d\d 09:00:00 CE[S]?T", html)  # 09:00 in Paris...
    assert re.search(r"\d{4}-\d\d-\d\d 0[78]:00:00 UTC", html)  # ...is 07:00 or 08:00 UTC
    assert "none yet" in html


def test_metrics_is_served_beside_the_dashboard(server):
    status, text, headers = get(server.url + "/metrics")
    assert status == 200 and "letsgo_queue_messages" in text
    assert headers["Content-Type"].startswith("text/plain")


def test_read_only_shows_everything_and_refuses_actions(tmp_path):
    with serve(tmp_path, LETSGO_WORKER_DASHBOARD_READ_ONLY="1", LETSGO_WORKER_PLUGINS="dashfault,dashbroken") as server:
        overview = get(server.url + "/dashboard")[1]
        # A plugin that failed to load is on the overview, named with its distribution and its error.
        assert "dashbroken" in overview and "dash-broken" in overview and "libinventory client" in overview
        assert "libinventory client" in get(server.url + "/dashboard/plugins")[1]
        message_id = enqueue(server.url, {"type": "dash.fragile", "payload": {"order": 1}})
        wait_for(lambda: get(server.url + f"/dashboard/message?state=dead_letter&id={message_id}")[0] == 200, what="dead letter")
        page = get(server.url + f"/dashboard/message?state=dead_letter&id={message_id}")[1]
        assert "read-only" in page and 'id="redrive"' not in page and 'id="delete"' not in page
        listing = get(server.url + "/dashboard/messages?state=dead_letter")[1]
        assert "Redrive all" not in listing
        status, text, _ = post_form(server.url + "/dashboard/actions/redrive", {"csrf": csrf_token(page), "all": "1"})
        assert status == 403 and "read-only" in text
        assert stats(server.url)["dead_letter"] == 1


def test_a_token_guards_pages_and_metrics(tmp_path):
    with serve(tmp_path, LETSGO_WORKER_DASHBOARD_TOKEN=TOKEN) as server:
        status, _, headers = get(server.url + "/dashboard")
        assert status == 303 and headers["Location"] == "/dashboard/login"
        assert get(server.url + "/metrics")[0] == 401
        assert get(server.url + "/dashboard/api/overview")[0] == 401
        assert get(server.url + "/metrics", Authorization="Bearer " + TOKEN)[0] == 200
        assert get(server.url + "/dashboard", Authorization="Bearer wrong")[0] == 303
        login = get(server.url + "/dashboard/login")[1]
        assert 'name="token"' in login and TOKEN not in login
        assert post_form(server.url + "/dashboard/login", {"token": "wrong"})[0] == 401
        assert post_form(server.url + "/dashboard/login", {"token": TOKEN}, {"Origin": "http://evil.example"})[0] == 403
        status, _, headers = post_form(server.url + "/dashboard/login", {"token": TOKEN})
        assert status == 303
        cookie = headers["Set-Cookie"].split(";")[0]
        assert TOKEN not in cookie and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        status, html, _ = get(server.url + "/dashboard", Cookie=cookie)
        assert status == 200 and "Log out" in html and TOKEN not in html


def test_beyond_loopback_without_a_token_every_page_is_refused():
    web = OpsWeb(None, guard=Guard(token=None, loopback=False, read_only=False))
    for path in ("/dashboard", "/metrics", "/dashboard/messages", "/dashboard/login"):
        response = web.handle(Request("GET", path, {}, Headers([("Host", "203.0.113.5:3002")])))
        assert response.status == 403, path
        assert "LETSGO_WORKER_DASHBOARD_TOKEN" in response.encode()[0].decode()
    guarded = OpsWeb(None, guard=Guard(token=TOKEN, loopback=False, read_only=False))
    bearer = Headers([("Host", "203.0.113.5:3002"), ("Authorization", f"Bearer {TOKEN}")])
    assert guarded.handle(Request("GET", "/dashboard", {}, bearer)).status == 200


def test_on_loopback_only_loopback_names_are_served(server):
    # DNS rebinding: another site's name resolving to 127.0.0.1 would make its page same-origin with the dashboard.
    status, text, _ = get(server.url + "/dashboard", Host=f"rebind.example:{server.port}")
    assert status == 403 and "not a name of this machine" in text
    assert get(server.url + "/metrics", Host="rebind.example")[0] == 403
    for name in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "127.0.0.1"):
        assert get(server.url + "/dashboard", Host=name)[0] == 200, name


def test_age_text_and_chart():
    assert dashboard.age_text(None) == "-"
    assert dashboard.age_text(42.9) == "42 s"
    assert dashboard.age_text(185) == "3 min 5 s"
    assert dashboard.age_text(7260) == "2 h 1 min"
    now = 1_800_000_000.0
    minute = int(now // 60) * 60
    chart = dashboard.outcome_chart([(minute, "a", "succeeded", 4), (minute, "b", "failed", 4), (minute - 3600, "a", "failed", 9)], now=now)
    last = chart["bars"][-1]
    assert chart["peak"] == 8 and [s[0] for s in last.segments] == ["succeeded", "failed"]
    assert sum(s[2] for s in last.segments) == pytest.approx(chart["height"])
    assert all(not bar.segments for bar in chart["bars"][:-1])  # the hour-old minute is outside the chart


def test_the_dashboard_module_imports_no_heavy_library_until_a_page_is_asked():
    import subprocess
    import sys

    code = ("import sys, host.ops.web, host.cli.dashboard; "
            "print(sorted(m for m in ('jinja2', 'prometheus_client', 'boto3', 'playwright') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_messages_are_paged_fifty_at_a_time(tmp_path):
    from host.local.queue import LocalQueue
    from host.ops.local_inspector import LocalInspector
    from host.ops.web import build

    queue = LocalQueue(str(tmp_path / "paged.db"))
    try:
        queue.enqueue_many([(f"m-{n:03}", '{"type": "dash.ok", "payload": {"order": %d}}' % n) for n in range(120)])
        web = build(LocalInspector.of_queue(queue), None, host="127.0.0.1", token=None, read_only=False)
        host = Headers([("Host", "127.0.0.1")])

        def page(offset: str) -> str:
            response = web.handle(Request("GET", "/dashboard/messages", {"state": "visible", "offset": offset}, host))
            assert response.status == 200
            return response.body

        first = page("0")
        assert first.count('class="message-link"') == 50 and "m-000" in first and "m-050" not in first
        assert "offset=50" in first and "Previous" not in first
        last = page("100")
        assert last.count('class="message-link"') == 20 and "m-119" in last
        assert "offset=50" in last and "Next" not in last
        web.close()
    finally:
        queue.close()


def test_a_plugin_route_under_the_dashboard_is_a_start_up_error(tmp_path):
    from host.testing import write_distribution
    from reliability.reliability_kit import clean_env, run_cli

    source = (
        "from host import hookimpl\n"
        "@hookimpl\n"
        "def letsgo_register_routes(register):\n"
        "    register('GET', '/dashboard/mine', lambda request: None)\n"
    )
    write_distribution(tmp_path / "site", "dash-squatter", "dashsquatter", source)
    env = clean_env(PYTHONPATH=str(tmp_path / "site"), LETSGO_WORKER_PLUGINS="dashsquatter")
    result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "q.db"), env=env, timeout=120)
    assert result.returncode == 2
    assert "plugin 'dashsquatter' registered GET /dashboard/mine, which the dashboard serves" in result.stderr


def test_schedules_show_named_schedules_and_each_last_tick(tmp_path):
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from host.testing import write_distribution

    soon = datetime.now(timezone.utc) + timedelta(seconds=6)
    source = (
        "import os\n"
        "from host import hookimpl\n"
        "def nightly(event, ctx):\n"
        "    raise RuntimeError('the report service is down')\n"
        "@hookimpl\n"
        "def letsgo_register_schedules(register):\n"
        "    register('nightly-report', os.environ['DASH_AT'], nightly, timezone='Europe/Paris',\n"
        "             description='Builds the nightly report')\n"
    )
    write_distribution(tmp_path / "site", "dash-reports", "dashreports", source)
    paris = soon.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%dT%H:%M:%S")
    with serve(tmp_path, LETSGO_WORKER_PLUGINS="dashfault,dashreports", DASH_AT=f"at({paris})",
               LETSGO_WORKER_SCHEDULE=f"at({soon.strftime('%Y-%m-%dT%H:%M:%S')})",
               LETSGO_WORKER_SCHEDULE_TIMEZONE="UTC") as server:
        html = get(server.url + "/dashboard/schedules")[1]
        assert "nightly-report" in html and "plugin dashreports" in html and "Builds the nightly report" in html
        assert paris.replace("T", " ") in html  # its one fire time, in Paris and...
        assert soon.strftime("%Y-%m-%d %H:%M:%S UTC") in html  # ...in UTC
        html = wait_for(lambda: (page := get(server.url + "/dashboard/schedules")[1]).count("none yet") == 0 and page,
                        timeout=90, what="both ticks recorded")
        assert "the report service is down" in html
        assert 'class="outcome-failed">failed' in html and 'class="outcome-succeeded">succeeded' in html
        assert html.count("It fires no more.") == 2
