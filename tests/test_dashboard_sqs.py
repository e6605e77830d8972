"""``letsgo-worker dashboard --sqs``: the same dashboard over an SQS queue and its DLQ, against moto's server.

The dashboard runs as a real subprocess, pointed at moto through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from browser.dashboard_kit import csrf_token, get, post_form, stats, wait_for
from moto_server import aws, create_queue, moto_server  # noqa: F401
from reliability.reliability_kit import clean_env, run_cli


class Dashboard:
    """``letsgo-worker dashboard --sqs ... --port 0`` in a subprocess, stopped by its PID."""

    def __init__(self, tmp, env, *args: str) -> None:
        self.log_path = tmp / "dashboard.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "dashboard", "--port", "0", *args],
            env=env, stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        found = wait_for(lambda: self._url(), timeout=120, what="the dashboard's listening line")
        self.url = found

    def _url(self):
        text = self.log_path.read_text()
        match = re.search(r" on (http://127\.0\.0\.1:\d+)/dashboard", text)
        if match:
            return match.group(1)
        if self.process.poll() is not None:
            raise AssertionError(f"the dashboard exited with {self.process.returncode}:\n{text[-3000:]}")
        return None

    def stop(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        return self.process.returncode


def body(n: int) -> str:
    return json.dumps({"type": "orders:new", "payload": {"order": n}})


@pytest.fixture
def queues(aws):  # noqa: F811
    sqs = aws.client("sqs")
    made = create_queue(sqs, dlq_max_receive_count=3)
    for n in range(2):
        sqs.send_message(QueueUrl=made["url"], MessageBody=body(n))
    for n in range(10, 13):
        sqs.send_message(QueueUrl=made["dlq_url"], MessageBody=body(n))
    made["sqs"] = sqs
    return made


def env_for(aws, **variables):  # noqa: F811
    return clean_env(**aws.environ(), LETSGO_WORKER_PLUGINS="", **variables)


def dead_letter_ids(dashboard: Dashboard) -> list[str]:
    html = get(dashboard.url + "/dashboard/messages?state=dead_letter")[1]
    return re.findall(r'name="ids" value="([^"]+)"', html)


def test_counts_dead_letters_with_the_peek_note_redrive_and_delete(aws, queues, tmp_path):  # noqa: F811
    dashboard = Dashboard(tmp_path, env_for(aws), "--sqs", queues["url"])
    try:
        counts = stats(dashboard.url)
        assert counts["visible"] == 2 and counts["dead_letter"] == 3 and counts["approximate"] is True
        overview = get(dashboard.url + "/dashboard")[1]
        assert "approximate" in overview and queues["url"] in overview

        status, html, _ = get(dashboard.url + "/dashboard/messages?state=dead_letter")
        assert status == 200
        assert "SQS has no true peek" in html and "receive count" in html  # said plainly, on the page
        ids = wait_for(lambda: found if len(found := dead_letter_ids(dashboard)) == 3 else None,
                       what="the three dead letters listed")
        assert "counted, not listed" in get(dashboard.url + "/dashboard/messages?state=visible")[1]

        wait_for(lambda: get(dashboard.url + f"/dashboard/message?state=dead_letter&id={ids[0]}")[0] == 200,
                 what="the dead letter visible again after a look")
        detail = get(dashboard.url + f"/dashboard/message?state=dead_letter&id={ids[0]}")[1]
        assert "SQS has no true peek" in detail and "orders:new" in detail

        token = csrf_token(html)
        status, _, headers = post_form(dashboard.url + "/dashboard/actions/redrive", {"csrf": token, "ids": ids[0]})
        assert status == 303 and "count=1" in headers["Location"]
        assert "one message at a time" in get(dashboard.url + headers["Location"])[1]
        wait_for(lambda: stats(dashboard.url)["visible"] == 3, what="the redriven message in the queue")

        status, _, headers = post_form(dashboard.url + "/dashboard/actions/delete",
                                       {"csrf": token, "state": "dead_letter", "ids": ids[1]})
        assert status == 303 and "count=1" in headers["Location"]
        wait_for(lambda: stats(dashboard.url)["dead_letter"] == 1, what="one dead letter left")

        assert post_form(dashboard.url + "/dashboard/actions/delete", {"csrf": token, "state": "dead_letter", "ids": ids[1]},
                         {"Origin": "http://127.0.0.1:9"})[0] == 403

        status, text, _ = post_form(dashboard.url + "/dashboard/actions/redrive", {"csrf": token, "all": "1"},
                                    {"Accept": "application/json"})
        assert status == 200, text
        answer = json.loads(text)
        assert answer["via"]  # says how: by a message-move task, or one by one where the endpoint lacks it
        wait_for(lambda: stats(dashboard.url)["dead_letter"] == 0 and stats(dashboard.url)["visible"] == 4,
                 what="every dead letter back in the queue")
        assert get(dashboard.url + "/dashboard/plugins")[0] == 200
        assert get(dashboard.url + "/dashboard/schedules")[0] == 200
        assert "letsgo_queue_messages" in get(dashboard.url + "/metrics")[1]
    finally:
        assert dashboard.stop() == 0


def test_purge_and_read_only(aws, queues, tmp_path):  # noqa: F811
    read_only = Dashboard(tmp_path, env_for(aws), "--sqs", queues["url"], "--dlq", queues["dlq_url"], "--read-only")
    try:
        html = get(read_only.url + "/dashboard/messages?state=dead_letter")[1]
        assert "Redrive all" not in html
        assert post_form(read_only.url + "/dashboard/actions/purge", {"csrf": csrf_token(html), "confirm": "purge"})[0] == 403
    finally:
        read_only.stop()
    dashboard = Dashboard(tmp_path, env_for(aws), "--sqs", queues["url"])
    try:
        confirm = get(dashboard.url + "/dashboard/purge")[1]
        assert "3 message(s), by SQS's approximate count" in confirm
        status, _, headers = post_form(dashboard.url + "/dashboard/actions/purge", {"csrf": csrf_token(confirm), "confirm": "purge"})
        assert status == 303 and "done=purge" in headers["Location"]
        wait_for(lambda: stats(dashboard.url)["dead_letter"] == 0, what="an empty dead-letter queue")
        assert stats(dashboard.url)["visible"] == 2  # the queue itself is untouched
    finally:
        dashboard.stop()


def test_usage_help_and_a_queue_that_does_not_exist(aws, tmp_path):  # noqa: F811
    help_text = " ".join(run_cli("dashboard", "--help").stdout.split())  # the description is wrapped
    for expected in ("--sqs", "--dlq", "--read-only", "LETSGO_WORKER_DASHBOARD_TOKEN", "no true peek", "examples:"):
        assert expected in help_text
    missing = run_cli("dashboard")
    assert missing.returncode == 2 and "--sqs" in missing.stderr
    gone = run_cli("dashboard", "--sqs", aws.url + "/123456789012/no-such-queue", "--port", "0", env=env_for(aws), timeout=60)
    assert gone.returncode == 2
    assert "no-such-queue" in gone.stderr and "Traceback" not in gone.stderr


def test_serve_sqs_shows_its_queue(aws, queues, tmp_path):  # noqa: F811
    from reliability.reliability_kit import Server

    with Server(tmp_path / "unused.db", tmp_path / "serve.log", env_for(aws), "--sqs", queues["url"]) as server:
        # With no plugin loaded its two messages are of an unknown type: rejected, serve --sqs sends
        # them straight to the dead-letter queue beside the three already there.
        wait_for(lambda: stats(server.url)["dead_letter"] == 5 and stats(server.url)["visible"] == 0,
                 what="the two rejected messages in the dead-letter queue")
        assert stats(server.url)["approximate"] is True
        # A look receives; one that finds fewer (SQS's receives sample the queue's hosts) is followed by another.
        html = wait_for(lambda: (page := get(server.url + "/dashboard/messages?state=dead_letter")[1]).count(
            'name="ids" value="') == 5 and page, what="the five dead letters listed")
        assert "SQS has no true peek" in html

