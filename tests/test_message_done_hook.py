"""``letsgo_message_done(outcome, ctx)``: once per message, whatever became of it, never changing it.

Messages run through ``process_sqs_event`` (the local runtime's path) and
``lambda_entry.handler`` (Lambda's), with plugins that record what they are told.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from host import hookimpl
from host.core.dispatch import Status
from host.testing import run_batch, sqs_event, sqs_record


class Order(BaseModel):
    order_id: str


async def ok_handler(message, ctx):
    ctx.logger.info("handled")


def failing_handler(message, ctx):
    raise RuntimeError("the warehouse API is down")


class Types:
    """Registers ``ok`` (async), ``boom`` (a def that raises) and ``order`` (with a payload model)."""

    @hookimpl
    def letsgo_register_messages(self, register):
        register("ok", ok_handler)
        register("boom", failing_handler)
        register("order", ok_handler, payload=Order)


class Recorder:
    """Records every ``letsgo_message_done`` call: (status, message id, type, plugin, ctx fields)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    @hookimpl
    def letsgo_message_done(self, outcome, ctx):
        self.calls.append({
            "status": outcome.status.value, "id": outcome.message_id, "type": outcome.type,
            "plugin": outcome.plugin, "reason": outcome.reason, "metric_type": outcome.metric_type,
            "handler_seconds": outcome.handler_seconds, "ctx_id": ctx.message_id,
            "ctx_receive_count": ctx.receive_count, "ctx_type": ctx.type, "ctx_plugin": ctx.plugin,
            "ctx_group": ctx.attributes.get("MessageGroupId"), "ctx": ctx,
        })


def by_id(recorder: Recorder) -> dict[str, dict]:
    return {call["id"]: call for call in recorder.calls}


def test_every_outcome_is_told_once_with_its_context(make_worker):
    recorder = Recorder()
    worker = make_worker(plugins=[Types(), recorder], entry_points=False)
    event = {"Records": [
        sqs_record({"type": "ok", "payload": {}}, message_id="good", receive_count=3),
        sqs_record({"type": "boom", "payload": {}}, message_id="bad"),
        sqs_record({"type": "order", "payload": {"order_id": 7}}, message_id="invalid"),
        sqs_record({"type": "nobody-handles-this", "payload": {}}, message_id="unknown"),
        sqs_record("{not json", message_id="garbled", receive_count=2),
    ]}
    from host.core.batch import process_sqs_event

    result = process_sqs_event(worker, event)

    assert [o.status for o in result.outcomes] == [
        Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.REJECTED, Status.REJECTED,
    ]
    assert len(recorder.calls) == 5
    calls = by_id(recorder)
    assert calls["good"]["status"] == "succeeded"
    assert calls["good"]["ctx_receive_count"] == 3
    assert (calls["good"]["ctx_type"], calls["good"]["ctx_plugin"]) == ("ok", "Types-0")
    assert calls["good"]["handler_seconds"] > 0
    assert calls["bad"]["status"] == "failed"
    assert "the warehouse API is down" in calls["bad"]["reason"]
    assert calls["bad"]["handler_seconds"] > 0
    # A payload that fails validation: the type is known and registered, its handler never ran.
    assert (calls["invalid"]["status"], calls["invalid"]["ctx_type"], calls["invalid"]["metric_type"]) == (
        "rejected", "order", "order",
    )
    assert calls["invalid"]["handler_seconds"] is None
    # An unknown type: the ctx says the type read, but no plugin; metrics count it as "(unknown)".
    assert (calls["unknown"]["ctx_type"], calls["unknown"]["ctx_plugin"]) == ("nobody-handles-this", None)
    assert calls["unknown"]["metric_type"] == "(unknown)"
    # Not JSON: nothing but what the record says.
    garbled = calls["garbled"]
    assert (garbled["status"], garbled["ctx_id"], garbled["ctx_receive_count"]) == ("rejected", "garbled", 2)
    assert (garbled["ctx_type"], garbled["ctx_plugin"], garbled["metric_type"]) == (None, None, "(unknown)")


def test_the_context_logger_carries_the_message_fields(make_worker, caplog):
    class Logs:
        @hookimpl
        def letsgo_message_done(self, outcome, ctx):
            ctx.logger.warning("audited")

    worker = make_worker(plugins=[Types(), Logs()], entry_points=False)
    with caplog.at_level(logging.INFO):
        run_batch(worker, {"type": "ok", "payload": {}}, message_id="m-1")
    audited = [r for r in caplog.records if r.getMessage() == "audited"]
    assert len(audited) == 1
    assert (audited[0].message_id, audited[0].message_type, audited[0].plugin) == ("m-1", "ok", "Types-0")


def test_a_failing_implementation_changes_nothing_and_is_logged_with_its_plugin(make_worker, caplog):
    class Broken:
        @hookimpl
        def letsgo_message_done(self, outcome, ctx):
            if outcome.ok:
                raise ValueError("metrics backend unreachable")
            raise SystemExit(3)  # must not end the batch either

    first, last = Recorder(), Recorder()
    # Registered before and after the broken one: both are told whatever order pluggy calls them in.
    worker = make_worker(plugins=[Types(), first, Broken(), last], entry_points=False)
    with caplog.at_level(logging.ERROR):
        result = run_batch(worker, {"type": "ok", "payload": {}}, {"type": "boom", "payload": {}})
    assert [o.status for o in result.outcomes] == [Status.SUCCEEDED, Status.FAILED]
    assert result.response()["batchItemFailures"] == [{"itemIdentifier": result.outcomes[1].message_id}]
    assert len(first.calls) == len(last.calls) == 2
    failures = [r for r in caplog.records if "letsgo_message_done" in r.getMessage()]
    assert len(failures) == 2
    assert all("'Broken-2'" in r.getMessage() and r.exc_info for r in failures)
    assert "metrics backend unreachable" in caplog.text


def test_an_async_implementation_is_refused_loudly_not_silently_dropped(make_worker, caplog):
    class Async:
        @hookimpl
        async def letsgo_message_done(self, outcome, ctx):
            raise AssertionError("never awaited")

    worker = make_worker(plugins=[Types(), Async()], entry_points=False)
    with caplog.at_level(logging.ERROR):
        result = run_batch(worker, {"type": "ok", "payload": {}})
    assert result.outcomes[0].ok
    assert "must be a plain def" in caplog.text
    assert "never awaited" not in caplog.text


def test_fifo_messages_not_run_after_a_failure_are_told_too(make_worker):
    recorder = Recorder()
    worker = make_worker(plugins=[Types(), recorder], entry_points=False)
    from host.core.batch import process_sqs_event

    event = {"Records": [
        sqs_record({"type": "boom", "payload": {}}, message_id="first", group_id="g"),
        sqs_record({"type": "ok", "payload": {}}, message_id="second", group_id="g"),
    ]}
    process_sqs_event(worker, event)
    calls = by_id(recorder)
    assert calls["first"]["status"] == calls["second"]["status"] == "failed"
    assert calls["second"]["ctx_group"] == "g"
    assert calls["second"]["handler_seconds"] is None  # it never ran


def test_lambda_handler_calls_the_hook(make_worker, monkeypatch):
    import lambda_entry
    from host.core.worker import set_worker

    recorder = Recorder()
    worker = make_worker(plugins=[Types(), recorder], entry_points=False)
    set_worker(worker)
    try:
        response = lambda_entry.handler(
            sqs_event({"type": "ok", "payload": {}}, {"type": "boom", "payload": {}}), None,
        )
    finally:
        set_worker(None)
    assert len(response["batchItemFailures"]) == 1
    assert sorted(call["status"] for call in recorder.calls) == ["failed", "succeeded"]


def test_a_worker_without_implementations_has_none_to_call(make_worker):
    worker = make_worker(plugins=[Types()], entry_points=False)
    assert worker.pm.hook.letsgo_message_done.get_hookimpls() == []
    assert run_batch(worker, {"type": "ok", "payload": {}}).outcomes[0].ok
    assert not worker.settings.metrics  # and so no EMF line either


def test_outcome_and_status_are_part_of_the_public_api():
    import host
    from host.core.dispatch import Outcome, Status

    assert host.Outcome is Outcome and host.Status is Status
    assert {"Outcome", "Status"} <= set(host.__all__)
