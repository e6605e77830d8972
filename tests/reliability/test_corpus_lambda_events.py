"""Bad and odd Lambda events: each gets an exact, explained result; none takes the worker down.

Events go through ``host.aws.events.handle_event`` (what ``lambda_entry.handler``
delegates to) with an in-process worker, and once through ``lambda_entry.handler``
itself with the worker built from the environment. Real AWS samples come from
the shared fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host import hookimpl
from host.aws.events import UnsupportedEvent, handle_event
from .reliability_kit import Recorder, in_process_worker, ok_message, record

FIXTURES = Path(__file__).parents[1] / "fixtures" / "aws"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


class LambdaContext:
    """The attributes of the Python runtime's context object that the worker reads."""

    function_name = "letsgo-worker"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    memory_limit_in_mb = "1024"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class Ticks:
    """Counts scheduled ticks; ``fail`` makes it raise after recording."""

    def __init__(self, fail: bool = False):
        self.events: list[dict] = []
        self.fail = fail

    @hookimpl
    def letsgo_scheduled(self, event, ctx):
        self.events.append(event)
        if self.fail:
            raise RuntimeError("tick handler broke")


@pytest.fixture
def recorder_worker():
    recorder = Recorder()
    worker = in_process_worker(recorder)
    yield recorder, worker
    worker.stop()


UNSUPPORTED = [
    ("empty-object", {}),
    ("list", []),
    ("list-of-records", [record(ok_message("x"))]),
    ("null", None),
    ("string", "Records"),
    ("number", 42),
    ("records-string", {"Records": "abc"}),
    ("records-null", {"Records": None}),
    ("records-object", {"Records": {"0": record(ok_message("x"))}}),
    ("lowercase-records", {"records": [record(ok_message("x"))]}),
    ("other-detail-type", {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
    ("scheduler-source-without-detail-type", {"source": "aws.scheduler", "detail": "{}"}),
]


@pytest.mark.parametrize("case,event", UNSUPPORTED, ids=[c[0] for c in UNSUPPORTED])
def test_unsupported_event_raises_a_named_error(recorder_worker, case, event):
    recorder, worker = recorder_worker
    with pytest.raises(UnsupportedEvent, match="expected an SQS batch, a scheduled event or a partner event"):
        handle_event(event, LambdaContext(), worker=worker)
    assert recorder.handled == []


@pytest.mark.parametrize(
    "name", ["eventbridge-event-ec2.powertools.json", "apigw-http-api-v2.powertools.json", "lambda-function-url.powertools.json"]
)
def test_aws_events_the_worker_does_not_route_are_refused(recorder_worker, name):
    with pytest.raises(UnsupportedEvent) as raised:
        handle_event(fixture(name), LambdaContext(), worker=recorder_worker[1])
    assert len(str(raised.value)) < 1000, "the error must not echo a whole event"


def test_huge_unsupported_event_is_summarised(recorder_worker):
    with pytest.raises(UnsupportedEvent) as raised:
        handle_event({"blob": "x" * 5_000_000}, LambdaContext(), worker=recorder_worker[1])
    assert len(str(raised.value)) < 1000


def test_empty_sqs_batch_reports_no_failures(recorder_worker):
    assert handle_event({"Records": []}, LambdaContext(), worker=recorder_worker[1]) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "name,failed",
    [
        ("sqs-standard-batch.json", ["059f36b4-87a3-44ab-83d2-661975830a7d", "2e1424d4-f796-459a-8184-9c92662be6da"]),
        ("sqs-single-record.sam-cli.json", None),
        ("sqs-standard-batch.powertools.json", None),
        ("sqs-standard-dlq-redrive.powertools.json", None),
        ("sqs-fifo-batch.powertools-sns.json", None),
    ],
)
def test_real_sqs_samples_with_foreign_bodies_are_all_reported(recorder_worker, name, failed):
    """AWS's own samples carry bodies that are not LetsGo messages: every record is reported."""
    event = fixture(name)
    response = handle_event(event, LambdaContext(), worker=recorder_worker[1])
    expected = failed or [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in expected]}


def test_mixed_batch_through_the_lambda_entry_point(monkeypatch, tmp_path):
    """``lambda_entry.handler`` with the worker built from the environment, as in the Lambda image."""
    from host.core.worker import reset_worker

    import lambda_entry

    monkeypatch.setenv("LETSGO_WORKER_PLUGINS", "")
    monkeypatch.setenv("LETSGO_WORKER_ENV_FILE", str(tmp_path / "absent.env"))
    reset_worker()
    try:
        bad = [record("Test message."), record('{"type": "toString"}'), record("null"), record("{}")]
        response = lambda_entry.handler({"Records": bad}, LambdaContext())
        assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in bad]}
        with pytest.raises(UnsupportedEvent):
            lambda_entry.handler({}, LambdaContext())
        # The process's worker survives a refused event and keeps answering.
        assert lambda_entry.handler({"Records": []}, LambdaContext()) == {"batchItemFailures": []}
    finally:
        reset_worker()


@pytest.mark.parametrize(
    "name", ["eventbridge-scheduler-event.powertools.json", "eventbridge-scheduled-event.json", "eventbridge-scheduled-event.sam-cli.json"]
)
def test_scheduled_event_runs_every_tick_hook_once(name):
    """``detail`` is a string from EventBridge Scheduler and an object from EventBridge rules."""
    first, second = Ticks(), Ticks()
    worker = in_process_worker(first, second)
    try:
        event = fixture(name)
        handle_event(event, LambdaContext(), worker=worker)
        assert first.events == [event] and second.events == [event]
    finally:
        worker.stop()


def test_failing_tick_hook_fails_the_invocation_after_the_others_ran():
    from host.core.ticks import ScheduledError

    broken, healthy = Ticks(fail=True), Ticks()
    worker = in_process_worker(broken, healthy)
    try:
        with pytest.raises(ScheduledError, match="Ticks-0") as raised:
            handle_event(fixture("eventbridge-scheduler-event.powertools.json"), LambdaContext(), worker=worker)
        assert "tick handler broke" in str(raised.value)
        assert len(healthy.events) == 1
    finally:
        worker.stop()


@pytest.mark.parametrize("detail", ["", "not json", "[]", None, 42], ids=["empty", "not-json", "array", "null", "number"])
def test_scheduled_event_with_odd_detail_still_ticks(detail):
    """The original tells a tick apart by ``detail-type`` alone; ``detail`` is never required."""
    ticks = Ticks()
    worker = in_process_worker(ticks)
    try:
        event = fixture("eventbridge-scheduler-event.powertools.json") | {"detail": detail}
        handle_event(event, LambdaContext(), worker=worker)
        assert len(ticks.events) == 1
    finally:
        worker.stop()
