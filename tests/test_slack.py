"""letsgo-slack against a real HTTP server on 127.0.0.1 standing in for Slack's incoming webhook.

Covers what is posted, which failures are retried (429 after Retry-After, a
connection that failed before the request was sent) and which fail the message
at once (500, timeouts, a connection closed after the request was sent), the
three ways to turn Slack off, and that the webhook URL (a secret) never shows
in a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
import traceback
from pathlib import Path

import pytest

from host import hookimpl
from host.errors import StartupError
from host.testing import run_batch
from letsgo_slack import SINK_NAME
from letsgo_slack.testing import FakeSlackWebhook
from letsgo_slack.webhook import redact, request_was_not_sent, retry_after_seconds

#: Parts of the fake webhook URLs that must never be logged (the secret is the path).
SECRETS = ("fakeSecretToken0123", "B0000TEST", "refusedSecret42")


class Speaker:
    """``Say`` (sync handler) and ``SayAsync`` notify the payload's text (and blocks)."""

    __name__ = "speaker"

    @hookimpl
    def letsgo_register_messages(self, register):
        def say(message, ctx):
            ctx.notify(message.payload["text"], blocks=message.payload.get("blocks"))

        async def say_async(message, ctx):
            await ctx.anotify(message.payload["text"], blocks=message.payload.get("blocks"))

        register("Say", say)
        register("SayAsync", say_async)


def say(text, blocks=None, type_="Say"):
    return {"type": type_, "payload": {"text": text, **({"blocks": blocks} if blocks else {})}}


@pytest.fixture
def slack_worker(make_worker, slack):
    """A worker with every installed plugin (letsgo-slack found by entry-point discovery) posting to ``slack``."""
    return make_worker(plugins=[Speaker()], env={"LETSGO_SLACK_URL": slack.url, "LETSGO_SLACK_TIMEOUT_SECONDS": "5"})


def refused_url() -> str:
    """A webhook URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/T0000TEST/B0000TEST/refusedSecret42"


def failure_reason(result) -> str:
    (outcome,) = result.outcomes
    assert outcome.status.value == "failed", outcome
    return outcome.reason


# -------------------------------------------------------------------------
# What is posted
# -------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["Say", "SayAsync"])
def test_a_notification_is_posted_as_letsgo_posts_it(slack_worker, slack, type_):
    result = run_batch(slack_worker, say("Hello *world*", type_=type_))
    assert result.response() == {"batchItemFailures": []}
    (post,) = slack.posts
    assert post.path == slack.path
    assert post.json() == {"text": "Hello *world*"}
    assert post.headers["Content-Type"].startswith("application/json")


def test_blocks_are_posted_with_the_text(slack_worker, slack):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Paid*"}}]
    run_batch(slack_worker, say("Paid", blocks))
    assert slack.posts[0].json() == {"text": "Paid", "blocks": blocks}


def test_the_sink_is_registered_per_worker_and_removed_at_shutdown(make_worker, slack):
    worker = make_worker(env={"LETSGO_SLACK_URL": slack.url})
    sink = worker.pm.get_plugin(SINK_NAME)
    assert sink is not None and "fakeSecretToken0123" not in repr(sink)
    worker.stop()
    assert worker.pm.get_plugin(SINK_NAME) is None


# -------------------------------------------------------------------------
# Retries: only what cannot post twice
# -------------------------------------------------------------------------


def test_429_is_posted_again_after_retry_after(slack_worker, slack, caplog):
    slack.reply(429, "rate_limited", {"Retry-After": "1"})
    result = run_batch(slack_worker, say("after the limit"))
    assert result.response() == {"batchItemFailures": []}
    first, second = slack.posts
    assert second.received_at - first.received_at >= 1.0  # Retry-After honoured
    assert first.body == second.body
    assert "Slack is rate-limiting the webhook (HTTP 429): posting again in 1.0 s (Retry-After)" in caplog.text


def test_429_retries_are_bounded_then_the_message_fails(slack_worker, slack):
    for _ in range(3):
        slack.reply(429, "rate_limited", {"Retry-After": "0"})
    result = run_batch(slack_worker, say("still limited"))
    assert len(slack.posts) == 3  # the first post and two retries
    assert failure_reason(result) == (
        "NotificationError: notification failed in letsgo_slack.webhook: "
        "Slack answered HTTP 429 'rate_limited' (rate-limited; Retry-After 0 s)"
    )


def test_a_retry_after_longer_than_the_bound_fails_at_once_for_the_queue_to_retry(slack_worker, slack):
    slack.reply(429, "rate_limited", {"Retry-After": "120"})
    result = run_batch(slack_worker, say("much later"))
    assert len(slack.posts) == 1
    assert "Retry-After 120 s" in failure_reason(result)


@pytest.mark.parametrize("type_", ["Say", "SayAsync"])
def test_500_is_not_retried_and_fails_the_message(slack_worker, slack, type_):
    slack.reply(500, "internal_error")
    result = run_batch(slack_worker, say("oops", type_=type_), message_id="m-500")
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-500"}]}
    assert len(slack.posts) == 1
    assert failure_reason(result) == (
        "NotificationError: notification failed in letsgo_slack.webhook: Slack answered HTTP 500 'internal_error'"
    )


def test_a_timeout_is_not_retried_and_fails_the_message(make_worker, slack):
    worker = make_worker(plugins=[Speaker()], env={"LETSGO_SLACK_URL": slack.url, "LETSGO_SLACK_TIMEOUT_SECONDS": "0.5"})
    slack.hang()
    result = run_batch(worker, say("no answer"))
    assert len(slack.posts) == 1
    assert failure_reason(result) == (
        "NotificationError: notification failed in letsgo_slack.webhook: Slack did not answer within 0.5 s "
        "(LETSGO_SLACK_TIMEOUT_SECONDS); not posted again now, since Slack may have received it"
    )


def test_a_connection_closed_after_the_request_was_sent_is_not_retried(slack_worker, slack):
    # slack-sdk's own ConnectionErrorRetryHandler would post this again (RemoteDisconnected).
    slack.close_without_answer()
    result = run_batch(slack_worker, say("did it arrive?"))
    assert len(slack.posts) == 1
    assert "RemoteDisconnected" in failure_reason(result)
    assert "Slack may have received it" in failure_reason(result)


def test_a_refused_connection_is_retried_once_then_fails_the_message(make_worker, caplog):
    worker = make_worker(plugins=[Speaker()], env={"LETSGO_SLACK_URL": refused_url()})
    result = run_batch(worker, say("anyone?"))
    assert failure_reason(result).startswith(
        "NotificationError: notification failed in letsgo_slack.webhook: "
        "could not connect to Slack (ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    retries = [r for r in caplog.records if r.name == "letsgo.slack" and "trying again" in r.getMessage()]
    assert len(retries) == 1


def test_a_request_that_could_not_be_sent_is_sent_again_and_arrives_once(make_worker):
    """Slack comes up between the refused attempt and the retry: the message is posted exactly once."""
    url = refused_url()
    port = int(url.split(":")[2].split("/")[0])
    started: list[FakeSlackWebhook] = []

    class StartSlackOnRetry(logging.Handler):
        def emit(self, record):
            # Runs in the posting thread before it sleeps, so Slack listens before the retry.
            if "trying again" in record.getMessage() and not started:
                started.append(FakeSlackWebhook("/services/T0000TEST/B0000TEST/refusedSecret42", port=port).start())

    handler = StartSlackOnRetry()
    logging.getLogger("letsgo.slack").addHandler(handler)
    try:
        worker = make_worker(plugins=[Speaker()], env={"LETSGO_SLACK_URL": url})
        result = run_batch(worker, say("second time lucky"))
    finally:
        logging.getLogger("letsgo.slack").removeHandler(handler)
        for fake in started:
            fake.stop()
    assert result.response() == {"batchItemFailures": []}
    assert started and started[0].texts == ["second time lucky"]


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (404, "Slack answered HTTP 404 'no_service': the webhook is revoked or LETSGO_SLACK_URL is wrong"),
        (403, "Slack answered HTTP 403 'invalid_token': the webhook is revoked or LETSGO_SLACK_URL is wrong"),
        (400, "Slack answered HTTP 400 'invalid_payload': Slack refused the notification's text or blocks"),
    ],
)
def test_client_errors_say_what_to_check(slack_worker, slack, status, hint):
    slack.reply(status, {404: "no_service", 403: "invalid_token", 400: "invalid_payload"}[status])
    result = run_batch(slack_worker, say("x"))
    assert len(slack.posts) == 1
    assert failure_reason(result).endswith(hint)


def test_retry_after_accepts_seconds_and_http_dates():
    from email.utils import format_datetime
    from datetime import datetime, timedelta, timezone

    assert retry_after_seconds({"Retry-After": "30"}) == 30
    assert retry_after_seconds({"retry-after": ["2.5"]}) == 2.5
    assert retry_after_seconds({}) == 1.0
    assert retry_after_seconds({"Retry-After": "soon"}) == 1.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    assert 80 <= retry_after_seconds({"Retry-After": later}) <= 90
    earlier = format_datetime(datetime.now(timezone.utc) - timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds({"Retry-After": earlier}) == 0


def test_only_errors_raised_before_the_request_was_sent_count_as_unsent():
    from http.client import RemoteDisconnected
    from urllib.error import HTTPError, URLError

    assert request_was_not_sent(URLError(ConnectionRefusedError(111, "Connection refused")))
    assert request_was_not_sent(URLError(socket.gaierror(-3, "Temporary failure in name resolution")))
    assert request_was_not_sent(URLError(ConnectionResetError(104, "reset while connecting")))
    assert not request_was_not_sent(URLError(TimeoutError("timed out")))
    assert not request_was_not_sent(RemoteDisconnected("Remote end closed connection without response"))
    assert not request_was_not_sent(ConnectionResetError(104, "reset while reading the answer"))
    assert not request_was_not_sent(TimeoutError("timed out"))
    assert not request_was_not_sent(HTTPError("u", 503, "busy", {}, None))


# -------------------------------------------------------------------------
# The URL is a secret
# -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "hooks.slack.com/services/T0000TEST/B0000TEST/fakeSecretToken0123",
        "ftp://x/fakeSecretToken0123",
        "https:///fakeSecretToken0123",
    ],
)
def test_an_invalid_url_stops_start_up_without_showing_it(make_worker, url):
    with pytest.raises(StartupError) as caught:
        make_worker(env={"LETSGO_SLACK_URL": url})
    message = str(caught.value)
    assert "LETSGO_SLACK_URL is not an http(s) URL" in message
    assert not any(secret in message for secret in SECRETS)


def test_a_bad_timeout_stops_start_up_naming_the_variable(make_worker, slack):
    with pytest.raises(StartupError) as caught:
        make_worker(env={"LETSGO_SLACK_URL": slack.url, "LETSGO_SLACK_TIMEOUT_SECONDS": "0"})
    assert str(caught.value) == "LETSGO_SLACK_TIMEOUT_SECONDS='0' is invalid: expected a number of seconds from 0.1 to 300"


def test_redact_hides_the_url_and_its_path():
    url = "https://hooks.slack.com/services/T1/B2/secret3"
    assert redact(f"POST {url} failed; path /services/T1/B2/secret3", url) == (
        "POST <LETSGO_SLACK_URL> failed; path <LETSGO_SLACK_URL>"
    )


def test_the_url_is_absent_from_every_log_line_and_error(make_worker, slack, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, slack-sdk and urllib included
    logging.getLogger("slack_sdk").setLevel(logging.DEBUG)
    try:
        worker = make_worker(
            plugins=[Speaker()],
            env={"LETSGO_SLACK_URL": slack.url, "LETSGO_SLACK_TIMEOUT_SECONDS": "1", "LETSGO_WORKER_TRACE_PLUGINS": "1"},
        )
        refused = make_worker(plugins=[Speaker()], env={"LETSGO_SLACK_URL": refused_url()})
        slack.reply(429, "rate_limited", {"Retry-After": "0"}).reply(200, "ok").reply(500, "internal_error").hang()
        slack.close_without_answer().reply(404, "no_service")
        outcomes = []
        for _ in range(5):
            outcomes += run_batch(worker, say("x")).outcomes
        outcomes += run_batch(refused, say("x")).outcomes
        outcomes += run_batch(worker, "not json").outcomes
    finally:
        logging.getLogger("slack_sdk").setLevel(logging.NOTSET)
    assert [o.status.value for o in outcomes] == ["succeeded", "failed", "failed", "failed", "failed", "failed", "rejected"]
    shown = [caplog.text, *(r.getMessage() for r in caplog.records)]
    for outcome in outcomes:
        shown.append(str(outcome.reason))
        if outcome.error is not None:
            shown.append("".join(traceback.format_exception(outcome.error)))
    assert len(caplog.records) > 10
    leaks = [text for text in shown if any(secret in text for secret in SECRETS)]
    assert leaks == []


LEAK_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    from host.config import Settings
    from host.errors import StartupError
    from host.testing import run_batch
    from host.core.worker import Worker

    message = {"type": "letsgo:contact", "payload": {"email": "a@b.c", "name": "Ann", "message": "hi",
               "timestamp": "2024-01-01T00:00:00Z", "query": {}}}
    statuses = []
    for url in (os.environ["GOOD_URL"], os.environ["REFUSED_URL"]):
        worker = Worker(Settings.from_env({"LETSGO_SLACK_URL": url, "LETSGO_SLACK_TIMEOUT_SECONDS": "1"})).start()
        for _ in range(int(os.environ["POSTS"]) if url == os.environ["GOOD_URL"] else 1):
            result = run_batch(worker, message)
            statuses += [o.status.value for o in result.outcomes]
            for outcome in result.outcomes:
                if outcome.error is not None:
                    logging.getLogger("test").error("failed", exc_info=outcome.error)
        worker.stop()
    try:
        Worker(Settings.from_env({"LETSGO_SLACK_URL": os.environ["BAD_URL"]})).start()
    except StartupError:
        logging.getLogger("test").exception("start-up failed")
    print(json.dumps(statuses))
    """
)


def test_the_url_is_absent_from_a_worker_process_stderr(slack, tmp_path):
    slack.reply(429, "rate_limited", {"Retry-After": "0"}).reply(200, "ok").reply(500, "internal_error")
    slack.hang().close_without_answer()
    env = {
        **os.environ,
        "GOOD_URL": slack.url,
        "REFUSED_URL": refused_url(),
        "BAD_URL": "hooks.slack.com/services/T0000TEST/B0000TEST/fakeSecretToken0123",
        "POSTS": "4",
    }
    done = subprocess.run(
        [sys.executable, "-c", LEAK_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["succeeded", "failed", "failed", "failed", "failed"]
    assert "rate-limiting" in done.stderr and "start-up failed" in done.stderr and "Traceback" in done.stderr
    assert [secret for secret in SECRETS if secret in done.stderr + done.stdout] == []


# -------------------------------------------------------------------------
# Turning Slack off: three ways
# -------------------------------------------------------------------------

CONTACT = {
    "type": "letsgo:contact",
    "payload": {"email": "a@b.c", "name": "Ann", "message": "hi", "timestamp": "2024-01-01T00:00:00Z", "query": {}},
}


def test_without_letsgo_slack_url_nothing_is_posted_and_messages_succeed(make_worker, slack, caplog):
    caplog.set_level(logging.DEBUG)
    worker = make_worker(env={})
    assert "letsgo_slack" in [p.name for p in worker.plugins]
    assert worker.pm.get_plugin(SINK_NAME) is None
    result = run_batch(worker, CONTACT)
    assert result.response() == {"batchItemFailures": []}
    assert slack.posts == []
    assert "LETSGO_SLACK_URL is not set: notifications are not posted to Slack" in caplog.text
    assert "no notification sink installed; not sent: :wave: New contact form submission" in caplog.text


def test_disabling_the_plugin_stops_posting_even_with_a_url(make_worker, slack):
    worker = make_worker(env={"LETSGO_SLACK_URL": slack.url, "LETSGO_WORKER_DISABLE_PLUGINS": "letsgo_slack"})
    assert "letsgo_slack" not in [p.name for p in worker.plugins]
    result = run_batch(worker, CONTACT)
    assert result.response() == {"batchItemFailures": []}
    assert slack.posts == []


UNINSTALLED_SCRIPT = textwrap.dedent(
    """
    import json, os
    from host.config import Settings
    from host.testing import run_batch
    from host.core.worker import Worker

    worker = Worker(Settings.from_env({"LETSGO_SLACK_URL": os.environ["SLACK_URL"]})).start()
    result = run_batch(worker, json.loads(os.environ["MESSAGE"]))
    print(json.dumps({"plugins": [p.name for p in worker.plugins], "response": result.response()}))
    """
)


def site_packages_view(dest: Path, hidden_prefixes: tuple[str, ...]) -> Path:
    """A copy (of symlinks) of this interpreter's site-packages, minus the entries ``pip uninstall`` removes."""
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in site.iterdir():
        if not entry.name.startswith(hidden_prefixes):
            (dest / entry.name).symlink_to(entry)
    return dest


def run_in_site(site: Path, slack_url: str, cwd: Path) -> dict:
    bootstrap = f"import site; site.addsitedir({str(site)!r}); exec(compile({UNINSTALLED_SCRIPT!r}, 'script', 'exec'))"
    env = {**os.environ, "SLACK_URL": slack_url, "MESSAGE": json.dumps(CONTACT)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-S", "-c", bootstrap], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_uninstalling_letsgo_slack_stops_posting(slack, tmp_path):
    """``pip uninstall letsgo-slack``, without touching the shared environment.

    ``pip uninstall`` of this editable install deletes three entries of
    site-packages: ``letsgo_slack-*.dist-info`` (the metadata that declares the
    entry point) and the ``__editable__`` ``.pth`` file and finder that make the
    package importable. The worker runs in a child interpreter started with
    ``-S`` (no automatic site-packages) whose only site directory is a view of
    the real one (symlinks) without those entries, so real entry-point
    discovery sees exactly what it would see after the uninstall. The same
    child with a complete view posts to Slack: the harness itself hides nothing else.
    """
    full = run_in_site(site_packages_view(tmp_path / "full", ("\0",)), slack.url, tmp_path)
    assert "letsgo_slack" in full["plugins"] and full["response"] == {"batchItemFailures": []}
    assert len(slack.posts) == 1

    hidden = ("letsgo_slack-", "__editable__.letsgo_slack-", "__editable___letsgo_slack_")
    uninstalled = run_in_site(site_packages_view(tmp_path / "uninstalled", hidden), slack.url, tmp_path)
    assert "letsgo_slack" not in uninstalled["plugins"]
    assert "letsgo_builtins" in uninstalled["plugins"]
    assert uninstalled["response"] == {"batchItemFailures": []}
    assert len(slack.posts) == 1  # nothing more was posted
