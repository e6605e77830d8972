"""Posting to a Slack incoming webhook with slack-sdk, retrying only what cannot post twice.

An incoming webhook is not idempotent: a request that reached Slack may have
posted its message even if no answer came back, so reposting it could post it
twice. Two cases are safe and retried here:

- HTTP 429: Slack refused the post; it is sent again after ``Retry-After``.
- a connection that failed before the request was sent: refused, reset or
  aborted while connecting or writing it, or a failed DNS lookup.

Everything else (HTTP 500, a timeout, a connection closed while waiting for the
answer) raises :class:`host.NotificationError` at once; the message that
sent the notification fails, and the queue retries it later.

The webhook URL is a secret (anyone holding it can post to the channel): it is
never put in a log line or an error message. slack-sdk itself logs URLs, so it
gets a logger of its own that emits nothing.
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from host import ConfigError, NotificationError, hookimpl

if TYPE_CHECKING:
    from host import Notification

logger = logging.getLogger("letsgo.slack")

#: Longest ``Retry-After`` waited for in-process; a longer one fails the post so the queue retries later.
MAX_RETRY_AFTER_SECONDS = 30.0
#: Posts refused with HTTP 429 that are sent again.
RATE_LIMIT_RETRIES = 2
#: Posts whose connection failed before the request was sent that are sent again.
UNSENT_REQUEST_RETRIES = 1
#: Seconds before resending a request that could not be sent (doubled per retry, plus up to 1 s of jitter).
UNSENT_REQUEST_BACKOFF = 0.5

#: Errors raised by urllib while it connects or writes a request, before Slack can have read it all.
_UNSENT_REASONS: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    socket.gaierror,
)

_REDACTED = "<LETSGO_SLACK_URL>"


def check_webhook_url(url: str) -> None:
    """Raise :class:`ConfigError` unless ``url`` is an http(s) URL with a host (its value is never shown)."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            "LETSGO_SLACK_URL is not an http(s) URL: set it to the Slack incoming webhook URL "
            "(https://hooks.slack.com/services/...), or unset it to turn Slack notifications off "
            "(the value is not shown because it is a secret)"
        )


def redact(text: str, url: str) -> str:
    """``text`` with the webhook URL, and its secret path on its own, replaced by a placeholder."""
    text = text.replace(url, _REDACTED)
    path = urlsplit(url).path
    if len(path) > 1:
        text = text.replace(path, _REDACTED)
    return text


def retry_after_seconds(headers: dict[str, Any]) -> float:
    """Seconds to wait according to a ``Retry-After`` header (seconds or an HTTP date); 1 if absent."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def request_was_not_sent(error: BaseException | None) -> bool:
    """True when ``error`` shows that the request never fully left: it is safe to send again.

    urllib wraps errors raised while connecting and writing the request in a
    ``URLError``; errors while waiting for the answer (``RemoteDisconnected``,
    a reset, a timeout) come unwrapped, after Slack may have read the request.
    A timeout is never retried: it may strike after the request was written.
    """
    from urllib.error import HTTPError, URLError

    if not isinstance(error, URLError) or isinstance(error, HTTPError):
        return False
    return isinstance(error.reason, _UNSENT_REASONS)


def _retry_handlers() -> list[Any]:
    """slack-sdk retry handlers for the two safe cases (slack-sdk imported only when posting)."""
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
    from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator

    class RateLimitRetry(RateLimitErrorRetryHandler):
        """HTTP 429: wait ``Retry-After`` (bounded), then post again.

        slack-sdk's own handler reads only whole seconds and fails on an HTTP date.
        """

        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            if response is None or response.status_code != 429:
                return False
            delay = retry_after_seconds(response.headers)
            if delay > MAX_RETRY_AFTER_SECONDS:
                logger.warning(
                    "Slack is rate-limiting the webhook for %.0f s (Retry-After), more than %.0f s: "
                    "the notification fails now and its message is retried later",
                    delay, MAX_RETRY_AFTER_SECONDS,
                )
                return False
            return True

        def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
            delay = retry_after_seconds(response.headers)
            logger.warning(
                "Slack is rate-limiting the webhook (HTTP 429): posting again in %.1f s (Retry-After)", delay
            )
            state.next_attempt_requested = True
            time.sleep(delay + random.uniform(0, 0.1))  # a little jitter, so waiting threads do not all post at once
            state.increment_current_attempt()

    class UnsentRequestRetry(ConnectionErrorRetryHandler):
        """A connection that failed before the request was sent: send it again.

        slack-sdk's own handler also retries ``RemoteDisconnected`` and resets
        while waiting for the answer, when Slack may already have posted.
        """

        def _can_retry(self, *, state, request, response=None, error=None) -> bool:
            return response is None and request_was_not_sent(error)

        def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
            logger.warning("could not connect to Slack (%s): trying again", _describe(error))
            super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)

    return [
        RateLimitRetry(max_retry_count=RATE_LIMIT_RETRIES),
        UnsentRequestRetry(
            max_retry_count=UNSENT_REQUEST_RETRIES,
            interval_calculator=BackoffRetryIntervalCalculator(backoff_factor=UNSENT_REQUEST_BACKOFF),
        ),
    ]


def _describe(error: BaseException | None) -> str:
    reason = getattr(error, "reason", None)
    shown = reason if isinstance(reason, BaseException) else error
    return f"{type(shown).__name__}: {shown}"


def _silent_logger() -> logging.Logger:
    # slack-sdk puts the URL in its log lines; this logger is outside the logging tree and drops everything.
    silent = logging.Logger("letsgo.slack.sdk", level=logging.CRITICAL + 1)
    silent.disabled = True
    return silent


class SlackWebhookSink:
    """A ``letsgo_notify`` sink posting every notification to one Slack incoming webhook.

    Registered by :func:`letsgo_slack.letsgo_startup` when ``LETSGO_SLACK_URL``
    is set; the repr never shows the URL.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        check_webhook_url(url)
        self._url = url
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SlackWebhookSink(url={_REDACTED}, timeout={self.timeout:g})"

    def _webhook_client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from slack_sdk.webhook import WebhookClient

                    self._client = WebhookClient(
                        self._url, timeout=self.timeout, logger=_silent_logger(), retry_handlers=_retry_handlers()
                    )
        return self._client

    @hookimpl
    def letsgo_notify(self, notification: Notification) -> None:
        """Post ``notification`` (``text``, and ``blocks`` when it has some) to the webhook.

        Raises :class:`NotificationError` when Slack did not take it.
        """
        self.post(notification.text, notification.blocks)

    def post(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Post one message, as LetsGo does (``{"text": ...}``, plus ``blocks``); raise :class:`NotificationError`."""
        try:
            response = self._webhook_client().send(text=text, blocks=blocks)
        except Exception as error:
            raise NotificationError(redact(self._explain(error), self._url)) from None
        if response.status_code != 200:
            raise NotificationError(redact(self._explain_status(response), self._url))
        logger.debug("posted a notification to Slack (%d characters)", len(text))

    def _explain(self, error: Exception) -> str:
        if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
            return (
                f"Slack did not answer within {self.timeout:g} s (LETSGO_SLACK_TIMEOUT_SECONDS); "
                "not posted again now, since Slack may have received it"
            )
        if request_was_not_sent(error):
            return f"could not connect to Slack ({_describe(error)}); check the network and LETSGO_SLACK_URL"
        return f"posting to Slack failed ({_describe(error)}); not posted again now, since Slack may have received it"

    def _explain_status(self, response: Any) -> str:
        body = (response.body or "").strip()[:200]
        status = response.status_code
        message = f"Slack answered HTTP {status}" + (f" {body!r}" if body else "")
        if status == 429:
            return message + f" (rate-limited; Retry-After {retry_after_seconds(response.headers):.0f} s)"
        if status in (403, 404, 410):
            return message + ": the webhook is revoked or LETSGO_SLACK_URL is wrong"
        if status == 400:
            return message + ": Slack refused the notification's text or blocks"
        return message
