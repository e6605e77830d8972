"""The host's notify(): sinks, the required=False opt-out, and delivery that keeps the event loop free."""

from __future__ import annotations

import logging
import threading

import pytest

from host import hookimpl
from host.core.dispatch import rejection_text
from host.errors import NotificationError
from host.core.notify import Notification, deliver
from host.testing import run_batch, scheduled_event


class Sink:
    """A sink that records, or fails with ``error``."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.__name__ = name
        self.error = error
        self.received: list[Notification] = []

    @hookimpl
    def letsgo_notify(self, notification):
        self.received.append(notification)
        if self.error is not None:
            raise self.error


class Announcer:
    """Message types whose handlers notify: sync, async, and best-effort variants."""

    __name__ = "announcer"

    @hookimpl
    def letsgo_register_messages(self, register):
        def announce_sync(message, ctx):
            ctx.notify(f"sync {message.payload}", source="announcer")

        async def announce_async(message, ctx):
            await ctx.anotify(f"async {message.payload}", level="warning")

        async def announce_best_effort(message, ctx):
            await ctx.anotify("best effort", required=False)

        def announce_best_effort_sync(message, ctx):
            ctx.notify("best effort sync", required=False)

        async def announce_blocking(message, ctx):
            ctx.notify("sync notify on the event loop")

        register("AnnounceSync", announce_sync)
        register("AnnounceAsync", announce_async)
        register("AnnounceBestEffort", announce_best_effort)
        register("AnnounceBestEffortSync", announce_best_effort_sync)
        register("AnnounceBlocking", announce_blocking)


def test_without_a_sink_notify_only_logs_at_debug(make_worker, caplog):
    caplog.set_level(logging.DEBUG)
    worker = make_worker(plugins=[Announcer()], entry_points=False)
    result = run_batch(worker, {"type": "AnnounceSync", "payload": 1}, {"type": "AnnounceAsync", "payload": 2})
    assert result.response() == {"batchItemFailures": []}
    notify_records = [r for r in caplog.records if r.name == "letsgo.notify"]
    assert sorted(r.getMessage() for r in notify_records) == [
        "no notification sink installed; not sent: async 2",
        "no notification sink installed; not sent: sync 1",
    ]
    assert all(r.levelno == logging.DEBUG for r in notify_records)


def test_handlers_notify_every_sink_with_text_level_and_source(make_worker):
    first, second = Sink("first_sink"), Sink("second_sink")
    worker = make_worker(plugins=[Announcer(), first, second], entry_points=False)
    result = run_batch(worker, {"type": "AnnounceSync", "payload": 1})
    assert result.response() == {"batchItemFailures": []}
    result = run_batch(worker, {"type": "AnnounceAsync", "payload": 2})
    assert result.response() == {"batchItemFailures": []}
    for sink in (first, second):
        assert sink.received == [
            Notification("sync 1", None, "info", "announcer"),
            Notification("async 2", None, "warning", None),
        ]


@pytest.mark.parametrize("type_", ["AnnounceSync", "AnnounceAsync"])
def test_a_failing_sink_fails_the_message_and_names_the_sink(make_worker, type_):
    broken, working = Sink("broken_sink", OSError("disk full")), Sink("working_sink")
    worker = make_worker(plugins=[Announcer(), broken, working], entry_points=False)
    result = run_batch(worker, {"type": type_, "payload": 1}, message_id="m-1")
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    (outcome,) = result.outcomes
    assert isinstance(outcome.error, NotificationError)
    assert outcome.reason == "NotificationError: notification failed in broken_sink: disk full"
    assert len(working.received) == 1  # the other sink still got it


@pytest.mark.parametrize("type_", ["AnnounceBestEffort", "AnnounceBestEffortSync"])
def test_required_false_logs_a_failed_notification_and_the_message_succeeds(make_worker, caplog, type_):
    broken = Sink("broken_sink", OSError("disk full"))
    worker = make_worker(plugins=[Announcer(), broken], entry_points=False)
    result = run_batch(worker, {"type": type_, "payload": None})
    assert result.response() == {"batchItemFailures": []}
    assert len(broken.received) == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "letsgo.notify" and r.levelno == logging.WARNING]
    assert warnings == [
        "notification failed in broken_sink: disk full (sent with required=False: the work goes on without it)"
    ]


def test_deliver_raises_notification_error_naming_every_failed_sink(make_worker):
    worker = make_worker(
        plugins=[Sink("a_sink", ValueError("bad blocks")), Sink("b_sink"), Sink("c_sink", OSError("down"))],
        entry_points=False,
    )
    with pytest.raises(NotificationError) as caught:
        deliver(worker.pm, Notification("hello"))
    assert str(caught.value) == "notification failed in a_sink: bad blocks; c_sink: down"


class WaitsForTheLoop:
    """A sink that blocks until a handler running on the event loop has made progress.

    If delivery ran on the event loop's thread, the loop could not run that
    handler while the sink waits: the sink would give up and record False.
    """

    __name__ = "waiting_sink"

    def __init__(self, progress: threading.Event) -> None:
        self.progress = progress
        self.loop_was_free: list[bool] = []

    @hookimpl
    def letsgo_notify(self, notification):
        self.loop_was_free.append(self.progress.wait(timeout=5))


class Ticker:
    """``Tick`` (async) marks progress on the event loop; ``Announce`` (async) notifies."""

    __name__ = "ticker"

    def __init__(self, progress: threading.Event) -> None:
        self.progress = progress

    @hookimpl
    def letsgo_register_messages(self, register):
        async def tick(message, ctx):
            self.progress.set()

        async def announce(message, ctx):
            await ctx.anotify("waiting for the loop")

        register("Tick", tick)
        register("Announce", announce)


def test_anotify_posts_off_the_event_loop_so_the_batch_goes_on(make_worker):
    progress = threading.Event()
    sink = WaitsForTheLoop(progress)
    worker = make_worker(plugins=[Ticker(progress), sink], entry_points=False)
    result = run_batch(worker, {"type": "Announce", "payload": None}, {"type": "Tick", "payload": None})
    assert result.response() == {"batchItemFailures": []}
    assert sink.loop_was_free == [True]


def test_the_rejection_notification_is_posted_off_the_event_loop(make_worker):
    progress = threading.Event()
    sink = WaitsForTheLoop(progress)
    worker = make_worker(plugins=[Ticker(progress), sink], entry_points=False)
    result = run_batch(worker, "not json", {"type": "Tick", "payload": None})
    assert [o.status.value for o in result.outcomes] == ["rejected", "succeeded"]
    assert sink.loop_was_free == [True]


def test_sync_notify_from_async_code_still_delivers_and_warns_once(make_worker, caplog, monkeypatch):
    import host.core.notify

    monkeypatch.setattr(host.core.notify, "_warned_about_blocking", False)
    sink = Sink("recording_sink")
    worker = make_worker(plugins=[Announcer(), sink], entry_points=False)
    result = run_batch(worker, *[{"type": "AnnounceBlocking", "payload": None}] * 2)
    assert result.response() == {"batchItemFailures": []}
    assert [n.text for n in sink.received] == ["sync notify on the event loop"] * 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "letsgo.notify" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "use `await ctx.anotify(...)`" in warnings[0]


def test_scheduled_hooks_notify_through_their_context(make_worker):
    from host.aws.events import handle_event

    class Nightly:
        __name__ = "nightly"

        @hookimpl
        def letsgo_scheduled(self, event, ctx):
            ctx.notify(f"tick at {event['time']}")

    class NightlyAsync:
        __name__ = "nightly_async"

        @hookimpl
        async def letsgo_scheduled(self, event, ctx):
            await ctx.anotify("async tick")

    sink = Sink("recording_sink")
    worker = make_worker(plugins=[Nightly(), NightlyAsync(), sink], entry_points=False)
    event = scheduled_event()
    handle_event(event, None, worker=worker)
    assert sorted(n.text for n in sink.received) == sorted([f"tick at {event['time']}", "async tick"])


def test_rejections_notify_once_per_message_with_escaped_values(make_worker):
    sink = Sink("recording_sink")
    worker = make_worker(plugins=[sink], entry_points=False)
    run_batch(worker, {"type": "<!channel> <https://evil.example|pay here>"}, message_id="m-1", receive_count=1)
    run_batch(worker, {"type": "<!channel> <https://evil.example|pay here>"}, message_id="m-1", receive_count=2)
    run_batch(worker, "{broken", message_id="m-2", receive_count=1)
    assert [n.text for n in sink.received] == [
        ":warning: Worker received an unsupported message type (it goes to the dead-letter queue): "
        "'&lt;!channel&gt; &lt;https://evil.example|pay here&gt;'\n"
        "*Message Id:* m-1\n"
        "*Reason:* unknown message type '&lt;!channel&gt; &lt;https://evil.example|pay here&gt;': "
        "no installed plugin handles it (known: none)",
        ":warning: Worker rejected a message (it goes to the dead-letter queue)\n"
        "*Message Id:* m-2\n"
        "*Reason:* body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ]
    assert all(n.level == "warning" and n.source == "letsgo-worker" for n in sink.received)


def test_an_invalid_payload_notification_names_the_type(make_worker):
    from pydantic import BaseModel

    class Order(BaseModel):
        orderId: str

    class Orders:
        __name__ = "orders"

        @hookimpl
        def letsgo_register_messages(self, register):
            register("OrderNew", lambda message, ctx: None, payload=Order)

    sink = Sink("recording_sink")
    worker = make_worker(plugins=[Orders(), sink], entry_points=False)
    run_batch(worker, {"type": "OrderNew", "payload": {}}, message_id="m-3")
    assert [n.text for n in sink.received] == [
        ":warning: Worker rejected a message (it goes to the dead-letter queue)\n"
        "*Message Id:* m-3\n"
        "*Type:* OrderNew\n"
        "*Reason:* payload of 'OrderNew' is invalid: orderId: Field required"
    ]


def test_rejection_text_keeps_each_field_on_its_line():
    from host.core.dispatch import Outcome, Status

    outcome = Outcome(Status.REJECTED, "m-4\n*Reason:* forged", "Bad\ntype", None, "unknown message type 'Bad\\ntype'")
    assert rejection_text(outcome).splitlines()[1:] == [
        "*Message Id:* m-4 *Reason:* forged",
        "*Reason:* unknown message type 'Bad\\ntype'",
    ]
