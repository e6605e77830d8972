"""A stand-in for a Slack incoming webhook, for tests: a real HTTP server on 127.0.0.1.

Point ``LETSGO_SLACK_URL`` at :attr:`FakeSlackWebhook.url` and read back what the
worker posted::

    from letsgo_slack.testing import FakeSlackWebhook

    def test_new_order_is_announced(make_worker):
        with FakeSlackWebhook() as slack:
            worker = make_worker(env={"LETSGO_SLACK_URL": slack.url})
            run_batch(worker, {"type": "OrderNew", "payload": {...}})
        assert slack.texts == [":tada: New order 123"]

Like Slack, it answers ``200 ok``, or ``404 no_service`` for any other path.
Queue other answers with :meth:`~FakeSlackWebhook.reply` (``429`` with
``Retry-After``, ``500``...), :meth:`~FakeSlackWebhook.hang` (no answer: the
client times out) or :meth:`~FakeSlackWebhook.close_without_answer`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Longest a hanging answer holds its connection, so that a forgotten server cannot block a test run.
MAX_HANG_SECONDS = 30.0


@dataclass(frozen=True)
class ReceivedPost:
    """One request the stand-in received."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class _Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "answer"  # or "hang", "close"


class FakeSlackWebhook:
    """An incoming-webhook stand-in on 127.0.0.1; use it as a context manager."""

    def __init__(self, path: str = "/services/T0000TEST/B0000TEST/fakeSecretToken0123", *, port: int = 0) -> None:
        self.path = path
        self.port = port
        self.posts: list[ReceivedPost] = []
        self._answers: deque[_Answer] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up --------------------------------------------------------------

    @property
    def url(self) -> str:
        """The webhook URL to put in ``LETSGO_SLACK_URL``."""
        if self._server is None:
            raise RuntimeError("the fake Slack webhook is not started; use it in a `with` block")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def reply(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> FakeSlackWebhook:
        """Answer the next post not yet answered with ``status`` (then ``200 ok`` again)."""
        with self._lock:
            self._answers.append(_Answer(status, body, dict(headers or {})))
        return self

    def hang(self) -> FakeSlackWebhook:
        """Read the next post and never answer it (until the stand-in stops)."""
        with self._lock:
            self._answers.append(_Answer(action="hang"))
        return self

    def close_without_answer(self) -> FakeSlackWebhook:
        """Read the next post completely, then close the connection without an answer."""
        with self._lock:
            self._answers.append(_Answer(action="close"))
        return self

    # -- results -------------------------------------------------------------

    @property
    def texts(self) -> list[str]:
        """The ``text`` of every post received, in order."""
        return [post.json().get("text") for post in list(self.posts)]

    # -- life cycle ----------------------------------------------------------

    def start(self) -> FakeSlackWebhook:
        """Listen on 127.0.0.1 (on :attr:`port`, or a free one when it is 0), in a background thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path != fake.path:
                    self._send(_Answer(404, "no_service"))
                    return
                with fake._lock:
                    fake.posts.append(ReceivedPost(self.path, dict(self.headers.items()), body, time.monotonic()))
                    answer = fake._answers.popleft() if fake._answers else _Answer()
                if answer.action == "hang":
                    fake._released.wait(MAX_HANG_SECONDS)
                    self.close_connection = True
                elif answer.action == "close":
                    self.close_connection = True
                else:
                    self._send(answer)

            def _send(self, answer: _Answer) -> None:
                payload = answer.body.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the default prints the request line, webhook secret included, to stderr

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging answers, stop serving and close the port."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeSlackWebhook:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
