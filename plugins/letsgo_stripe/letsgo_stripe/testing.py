"""Helpers for testing Stripe handlers: ``letsgo:stripe`` messages, signed webhook requests, thin
event notifications and :class:`FakeStripeApi`, a stand-in for Stripe's API.

Use them with the fixtures of ``host.testing``::

    from host.testing import run_batch
    from letsgo_stripe.testing import stripe_message

    def test_invoice_paid(make_worker, notifications):
        worker = make_worker(plugins=[MyPlugin(), notifications])
        event = {"id": "evt_1", "object": "event", "type": "invoice.paid", "data": {"object": {...}}}
        assert run_batch(worker, stripe_message(event)).response() == {"batchItemFailures": []}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from letsgo_stripe.events import MESSAGE_TYPE


def stripe_message(event: Mapping[str, Any], mode: str = "TEST") -> dict[str, Any]:
    """The ``letsgo:stripe`` message LetsGo's API enqueues for ``event``: the event plus ``stripeMode``."""
    return {"type": MESSAGE_TYPE, "payload": {**event, "stripeMode": mode}}


def signature_header(body: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``body``, computed as Stripe does.

    ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>``.
    """
    payload = body.decode("utf-8") if isinstance(body, bytes) else body
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.{payload}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def thin_notification(event_type: str, related: Mapping[str, Any] | None, *, event_id: str | None = None,
                      livemode: bool = False, snapshot_event: str | None = None) -> dict[str, Any]:
    """A thin event notification (``"object": "v2.core.event"``) about the object ``related``, as Stripe sends it."""
    import uuid

    notification: dict[str, Any] = {
        "id": event_id or f"evt_test_{uuid.uuid4().hex}",
        "object": "v2.core.event",
        "type": event_type,
        "livemode": livemode,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "context": None,
    }
    if related is not None:
        notification["related_object"] = {"id": related["id"], "type": related["object"], "url": object_path(related)}
    if snapshot_event is not None:
        notification["snapshot_event"] = snapshot_event
    return notification


def object_path(obj: Mapping[str, Any]) -> str:
    """Where Stripe's API serves ``obj`` (``{"object": "invoice", "id": "in_1"}`` -> ``/v1/invoices/in_1``)."""
    from letsgo_stripe.api import object_url

    return object_url(obj)


class FakeStripeApi:
    """A stand-in for Stripe's API on 127.0.0.1, serving the objects and v2 events it is given.

    Point the SDK at it with ``stripe.api_base = fake.url`` (``monkeypatch.setattr``).
    Every request is recorded in :attr:`requests` as ``(method, path, api key)``;
    one without an ``Authorization: Bearer`` key is answered 401, an unknown
    path 404, both with Stripe's error shape. Use it as a context manager::

        with FakeStripeApi() as api:
            api.put(invoice)                       # served at /v1/invoices/<id>
            api.put_thin_event(notification)       # served at /v2/core/events/<id>
    """

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._server: Any = None
        self.url = ""

    def put(self, obj: Mapping[str, Any], path: str | None = None) -> str:
        """Serve ``obj`` (a dict with ``object`` and ``id``) from now on; return its path."""
        path = path or object_path(obj)
        self.objects[path] = dict(obj)
        return path

    def put_thin_event(self, notification: Mapping[str, Any], **fields: Any) -> str:
        """Serve the v2 event of a thin ``notification`` (plus ``fields`` such as ``reason`` or ``data``)."""
        event = {**notification, "reason": None, **fields}
        return self.put(event, f"/v2/core/events/{notification['id']}")

    def __enter__(self) -> FakeStripeApi:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                authorization = self.headers.get("Authorization") or ""
                key = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else None
                path = self.path.split("?", 1)[0]
                fake.requests.append(("GET", path, key))
                if key is None:
                    error = {"type": "invalid_request_error", "message": "You did not provide an API key."}
                    self._answer(401, {"error": error})
                elif path in fake.objects:
                    self._answer(200, fake.objects[path])
                else:
                    self._answer(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                 "message": f"No such object: {path}"}})

            def _answer(self, status: int, body: Mapping[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's own output stays readable

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it when the test ends.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
