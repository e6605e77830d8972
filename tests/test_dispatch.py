"""Dispatch: the single path from a message body to an outcome, for both runtimes."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from pydantic import BaseModel

from host import hookimpl
from host.core.batch import run
from host.core.dispatch import Status, dispatch


class Greeting(BaseModel):
    name: str
    times: int = 1


class Handlers:
    """An in-process plugin with a sync, an async and a failing handler."""

    __name__ = "greeter"

    def __init__(self):
        self.calls = []

    def greet_sync(self, message, ctx):
        self.calls.append(("sync", message.payload.name, threading.current_thread().name, ctx.message_id, ctx.receive_count))

    async def greet_async(self, message, ctx):
        await asyncio.sleep(0)
        self.calls.append(("async", message.payload.name, threading.current_thread().name, ctx.message_id, ctx.receive_count))

    def explode(self, message, ctx):
        raise ConnectionError("api.example.com refused the connection")

    def raw(self, message, ctx):
        self.calls.append(("raw", message.payload, message.body, ctx.type, ctx.plugin))

    @hookimpl
    def letsgo_register_messages(self, register):
        register("GreetSync", self.greet_sync, payload=Greeting)
        register("GreetAsync", self.greet_async, payload=Greeting)
        register("Explode", self.explode)
        register("Raw", self.raw)


@pytest.fixture
def greeter():
    return Handlers()


@pytest.fixture
def greeter_worker(make_worker, greeter, notifications):
    return make_worker(plugins=[greeter, notifications], entry_points=False)


def send(worker, body, **options):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    options.setdefault("message_id", "m-1")
    return run(dispatch(worker, body, **options))


def test_sync_handler_runs_in_the_thread_pool(greeter_worker, greeter):
    outcome = send(greeter_worker, {"type": "GreetSync", "payload": {"name": "Ada"}}, receive_count=3)
    assert outcome.status is Status.SUCCEEDED and outcome.ok
    (call,) = greeter.calls
    assert call[:2] == ("sync", "Ada") and call[2].startswith("letsgo-handler") and call[3:] == ("m-1", 3)


def test_async_handler_runs_on_the_event_loop(greeter_worker, greeter):
    outcome = send(greeter_worker, {"type": "GreetAsync", "payload": {"name": "Grace"}})
    assert outcome.status is Status.SUCCEEDED
    (call,) = greeter.calls
    assert call[:2] == ("async", "Grace") and call[2] == threading.main_thread().name


def test_type_without_model_gets_the_raw_payload(greeter_worker, greeter):
    body = {"type": "Raw", "payload": [1, {"a": None}], "extra": True}
    assert send(greeter_worker, body).ok
    assert greeter.calls == [("raw", [1, {"a": None}], body, "Raw", "greeter")]


def test_raising_handler_fails_for_retry_with_its_error(greeter_worker):
    outcome = send(greeter_worker, {"type": "Explode", "payload": None})
    assert outcome.status is Status.FAILED
    assert (outcome.type, outcome.plugin) == ("Explode", "greeter")
    assert outcome.reason == "ConnectionError: api.example.com refused the connection"
    assert isinstance(outcome.error, ConnectionError)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        ('{"type": "GreetSync", "payload": {"name": NaN}}', "body is not valid JSON: NaN is not allowed in JSON"),
        ("[" * 100_000 + "]" * 100_000, "body is not valid JSON: nested too deeply"),
        ("[1, 2]", 'body must be a JSON object with "type" and "payload", got an array'),
        ("null", 'body must be a JSON object with "type" and "payload", got null'),
        ('"GreetSync"', 'body must be a JSON object with "type" and "payload", got a string'),
        ('{"payload": {}}', 'message has no "type"'),
        ('{"type": "", "payload": {}}', 'message "type" must be a non-empty string, got ""'),
        ('{"type": 7, "payload": {}}', 'message "type" must be a non-empty string, got 7'),
        ('{"type": "toString", "payload": {}}', "unknown message type 'toString': no installed plugin handles it (known: Explode, GreetAsync, GreetSync, Raw)"),
        ('{"type": "__proto__"}', "unknown message type '__proto__'"),
        ('{"type": "GreetSync", "payload": {"times": "x"}}', "payload of 'GreetSync' is invalid: name: Field required; times: Input should be a valid integer"),
        ('{"type": "GreetSync"}', "payload of 'GreetSync' is invalid: payload: Input should be a valid dictionary or instance of Greeting"),
    ],
)
def test_every_rejection_reason(greeter_worker, greeter, body, reason):
    outcome = send(greeter_worker, body)
    assert outcome.status is Status.REJECTED
    assert outcome.reason.startswith(reason)
    assert greeter.calls == []


def test_rejection_notifies_once_per_message(greeter_worker, notifications):
    send(greeter_worker, '{"type": "Nope"}', message_id="m-9", receive_count=1)
    send(greeter_worker, '{"type": "Nope"}', message_id="m-9", receive_count=2)
    assert len(notifications.texts) == 1
    assert "m-9" in notifications.texts[0] and "unknown message type 'Nope'" in notifications.texts[0]


def test_failing_notification_sink_does_not_turn_a_rejection_into_a_crash(make_worker, greeter):
    class BrokenSink:
        __name__ = "broken_sink"

        @hookimpl
        def letsgo_notify(self, notification):
            raise OSError("sink down")

    worker = make_worker(plugins=[greeter, BrokenSink()], entry_points=False)
    assert send(worker, "garbage").status is Status.REJECTED


def test_context_exposes_lambda_remaining_time(make_worker):
    seen = {}

    class FakeLambdaContext:
        def get_remaining_time_in_millis(self):
            return 4321

    class Plugin:
        __name__ = "timer"

        @hookimpl
        def letsgo_register_messages(self, register):
            def handler(message, ctx):
                seen["remaining"] = ctx.remaining_time_ms()
                seen["attributes"] = ctx.attributes
                ctx.logger.info("handled")

            register("Timed", handler)

    worker = make_worker(plugins=[Plugin()], entry_points=False)
    outcome = send(worker, '{"type": "Timed"}', lambda_context=FakeLambdaContext(), attributes={"MessageGroupId": "g"})
    assert outcome.ok
    assert seen == {"remaining": 4321, "attributes": {"MessageGroupId": "g"}}


def test_context_without_lambda_has_no_deadline(make_worker):
    seen = []

    class Plugin:
        __name__ = "local"

        @hookimpl
        def letsgo_register_messages(self, register):
            register("Local", lambda message, ctx: seen.append(ctx.remaining_time_ms()))

    assert send(make_worker(plugins=[Plugin()], entry_points=False), '{"type": "Local"}').ok
    assert seen == [None]
