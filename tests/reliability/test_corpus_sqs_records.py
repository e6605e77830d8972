"""Bad SQS records: each is rejected (or failed) alone, with a reason naming the problem.

Every case runs in a batch between two good messages through
``host.core.batch.process_sqs_event`` (the code Lambda and the local runtime share):
the bad record gets the exact status and a reason, the good ones are handled,
and ``batchItemFailures`` names exactly the bad record.
"""

from __future__ import annotations

import json

import pytest

from host.core.batch import process_sqs_event
from host.core.dispatch import Status
from .reliability_kit import Recorder, deeply_nested, in_process_worker, ok_message, record

REJECTED, FAILED, SUCCEEDED = Status.REJECTED, Status.FAILED, Status.SUCCEEDED

# (case id, raw body, expected status, words the reason must contain)
BODIES = [
    ("not-json", "Test message.", REJECTED, ["not valid JSON"]),
    ("empty-body", "", REJECTED, ["not valid JSON"]),
    ("whitespace-body", "   \n", REJECTED, ["not valid JSON"]),
    ("null", "null", REJECTED, ["JSON object", "null"]),
    ("array", "[]", REJECTED, ["JSON object", "an array"]),
    ("array-of-message", json.dumps([ok_message("x")]), REJECTED, ["JSON object", "an array"]),
    ("string", '"rel.ok"', REJECTED, ["JSON object", "a string"]),
    ("number", "42", REJECTED, ["JSON object", "a number"]),
    ("boolean", "true", REJECTED, ["JSON object", "a boolean"]),
    ("empty-object", "{}", REJECTED, ['no "type"']),
    ("payload-only", '{"payload": {"a": 1}}', REJECTED, ['no "type"']),
    ("type-null", '{"type": null}', REJECTED, ['"type" must be a non-empty string', "null"]),
    ("type-number", '{"type": 42}', REJECTED, ['"type" must be a non-empty string', "42"]),
    ("type-empty", '{"type": ""}', REJECTED, ['"type" must be a non-empty string']),
    ("type-list", '{"type": ["rel.ok"]}', REJECTED, ['"type" must be a non-empty string', "rel.ok"]),
    ("type-object", '{"type": {"name": "rel.ok"}}', REJECTED, ['"type" must be a non-empty string']),
    ("type-bool", '{"type": true}', REJECTED, ['"type" must be a non-empty string', "true"]),
    ("type-toString", '{"type": "toString"}', REJECTED, ["unknown message type 'toString'"]),
    ("type-__proto__", '{"type": "__proto__"}', REJECTED, ["unknown message type '__proto__'"]),
    ("type-constructor", '{"type": "constructor"}', REJECTED, ["unknown message type 'constructor'"]),
    ("type-hasOwnProperty", '{"type": "hasOwnProperty"}', REJECTED, ["unknown message type 'hasOwnProperty'"]),
    ("type-valueOf", '{"type": "valueOf"}', REJECTED, ["unknown message type 'valueOf'"]),
    ("type-__class__", '{"type": "__class__"}', REJECTED, ["unknown message type '__class__'"]),
    ("type-__dict__", '{"type": "__dict__"}', REJECTED, ["unknown message type '__dict__'"]),
    ("type-unknown", '{"type": "NoSuchType", "payload": 1}', REJECTED, ["unknown message type 'NoSuchType'", "rel.ok"]),
    ("type-padded", '{"type": " rel.ok "}', REJECTED, ["unknown message type ' rel.ok '"]),
    ("type-case", '{"type": "REL.OK"}', REJECTED, ["unknown message type 'REL.OK'"]),
    ("type-nul-char", '{"type": "rel.ok\\u0000"}', REJECTED, ["unknown message type"]),
    ("payload-missing-field", '{"type": "rel.model", "payload": {"name": "a"}}', REJECTED, ["payload of 'rel.model' is invalid", "count"]),
    ("payload-wrong-type", '{"type": "rel.model", "payload": {"name": "a", "count": "many"}}', REJECTED, ["payload of 'rel.model' is invalid", "count"]),
    ("payload-constraint", '{"type": "rel.model", "payload": {"name": "a", "count": -1}}', REJECTED, ["count", "greater than or equal to 0"]),
    ("payload-null", '{"type": "rel.model", "payload": null}', REJECTED, ["payload of 'rel.model' is invalid"]),
    ("payload-absent", '{"type": "rel.model"}', REJECTED, ["payload of 'rel.model' is invalid"]),
    ("payload-array", '{"type": "rel.model", "payload": [1, 2]}', REJECTED, ["payload of 'rel.model' is invalid"]),
    ("payload-huge-float", '{"type": "rel.model", "payload": {"name": "a", "count": 1e400}}', REJECTED, ["count"]),
    ("NaN", '{"type": "rel.ok", "payload": NaN}', REJECTED, ["not valid JSON", "NaN"]),
    ("Infinity", '{"type": "rel.ok", "payload": Infinity}', REJECTED, ["not valid JSON", "Infinity"]),
    ("minus-Infinity", '{"type": "rel.ok", "payload": -Infinity}', REJECTED, ["not valid JSON", "Infinity"]),
    ("trailing-garbage", '{"type": "rel.ok"} xyz', REJECTED, ["not valid JSON", "Extra data"]),
    ("two-objects", '{"type": "rel.ok"}{"type": "rel.ok"}', REJECTED, ["not valid JSON", "Extra data"]),
    ("truncated", '{"type": "rel.ok", "payload": {"a": ', REJECTED, ["not valid JSON"]),
    ("single-quotes", "{'type': 'rel.ok'}", REJECTED, ["not valid JSON"]),
    ("byte-order-mark", '\ufeff{"type": "rel.ok"}', REJECTED, ["not valid JSON", "BOM"]),
    ("nested-100000-payload", '{"type": "rel.ok", "payload": ' + deeply_nested(100_000) + "}", REJECTED, ["not valid JSON", "nested too deeply"]),
    ("nested-100000-top", deeply_nested(100_000), REJECTED, ["not valid JSON", "nested too deeply"]),
    ("nested-objects-100000", '{"a":' * 100_000 + "1" + "}" * 100_000, REJECTED, ["not valid JSON", "nested too deeply"]),
    ("huge-integer", '{"type": "rel.ok", "payload": ' + "9" * 5000 + "}", REJECTED, ["not valid JSON", "digits"]),
    ("handler-raises", '{"type": "rel.fail", "payload": {}}', FAILED, ["RuntimeError", "rel.fail always fails"]),
]


@pytest.fixture(scope="module")
def recorder_worker():
    recorder = Recorder()
    worker = in_process_worker(recorder)
    yield recorder, worker
    worker.stop()


def run_between_good(recorder_worker, bad: dict):
    recorder, worker = recorder_worker
    before, after = record(ok_message("before")), record(ok_message("after"))
    result = process_sqs_event(worker, {"Records": [before, bad, after]})
    handled = recorder.handled_ids()
    assert before["messageId"] in handled and after["messageId"] in handled, "good neighbours were not handled"
    assert [o.status for o in (result.outcomes[0], result.outcomes[2])] == [SUCCEEDED, SUCCEEDED]
    return result


@pytest.mark.parametrize("case,body,status,words", BODIES, ids=[case[0] for case in BODIES])
def test_bad_body_fails_alone_with_a_reason(recorder_worker, case, body, status, words):
    bad = record(body)
    result = run_between_good(recorder_worker, bad)
    outcome = result.outcomes[1]
    assert outcome.status is status, outcome.reason
    assert outcome.message_id == bad["messageId"]
    for word in words:
        assert word in outcome.reason, f"{word!r} not in reason {outcome.reason!r}"
    assert len(outcome.reason) < 2000, "a reason must stay readable, not echo the whole body"
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    assert bad["messageId"] not in recorder_worker[0].handled_ids()


def test_rejection_notifies_once_and_names_the_message(recorder_worker):
    recorder, worker = recorder_worker
    bad = record('{"type": "toString"}')
    before = len(recorder.notifications)
    process_sqs_event(worker, {"Records": [bad]})
    redelivered = record('{"type": "toString"}', message_id=bad["messageId"], receive_count=2)
    process_sqs_event(worker, {"Records": [redelivered]})
    texts = [n.text for n in recorder.notifications[before:]]
    assert len(texts) == 1, texts
    assert bad["messageId"] in texts[0] and "toString" in texts[0]


def test_long_unknown_type_is_cut_in_the_reason(recorder_worker):
    bad = record(json.dumps({"type": "x" * 1_000_000}))
    outcome = run_between_good(recorder_worker, bad).outcomes[1]
    assert outcome.status is REJECTED
    assert "unknown message type 'xxxx" in outcome.reason and len(outcome.reason) < 2000


def test_duplicate_keys_last_one_wins_as_in_javascript(recorder_worker):
    """The app enqueues with JSON.stringify and the original parsed with JSON.parse: the last key wins."""
    recorder, worker = recorder_worker
    message = record('{"type": "NoSuchType", "type": "rel.ok", "payload": 1, "payload": 2}')
    result = run_between_good(recorder_worker, message)
    assert result.outcomes[1].status is SUCCEEDED
    assert ("rel.ok", message["messageId"], 2) in recorder.handled


# Records that are not well-formed SQS records (hand-built events, `letsgo-worker invoke`).
MALFORMED_RECORDS = [
    ("body-missing", {"messageId": "m-body-missing"}, ['"body"']),
    ("body-null", {"messageId": "m-body-null", "body": None}, ['"body"']),
    ("body-object", {"messageId": "m-body-object", "body": {"type": "rel.ok"}}, ['"body"']),
    ("body-number", {"messageId": "m-body-number", "body": 7}, ['"body"']),
]


@pytest.mark.parametrize("case,bad,words", MALFORMED_RECORDS, ids=[case[0] for case in MALFORMED_RECORDS])
def test_malformed_record_is_rejected_alone(recorder_worker, case, bad, words):
    result = run_between_good(recorder_worker, bad)
    outcome = result.outcomes[1]
    assert outcome.status is REJECTED
    for word in words:
        assert word in outcome.reason
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}


def test_unreadable_receive_count_counts_as_first_receive(recorder_worker):
    recorder, worker = recorder_worker
    message = record(ok_message("count"))
    message["attributes"]["ApproximateReceiveCount"] = "many"
    result = run_between_good(recorder_worker, message)
    assert result.outcomes[1].status is SUCCEEDED


@pytest.mark.parametrize("attributes", [None, "abc", ["ApproximateReceiveCount"]], ids=["null", "string", "list"])
def test_attributes_not_an_object_do_not_break_the_batch(recorder_worker, attributes):
    message = record(ok_message("attributes"))
    message["attributes"] = attributes
    result = run_between_good(recorder_worker, message)
    assert result.outcomes[1].status is SUCCEEDED


def test_record_without_message_id_never_yields_a_bogus_item_identifier(recorder_worker):
    """Lambda fails the whole batch when an itemIdentifier is not one of the batch's ids."""
    bad = record('{"type": "NoSuchType"}')
    del bad["messageId"]
    result = run_between_good(recorder_worker, bad)
    assert result.outcomes[1].status is REJECTED
    assert "messageId" in result.outcomes[1].reason
    identifiers = [item["itemIdentifier"] for item in result.response()["batchItemFailures"]]
    assert all(isinstance(i, str) and i and i != "None" for i in identifiers), identifiers


@pytest.mark.parametrize("bad", ["abc", None, 42, ["rel.ok"]], ids=["string", "null", "number", "list"])
def test_record_that_is_not_an_object_fails_alone(recorder_worker, bad):
    result = run_between_good(recorder_worker, bad)
    assert result.outcomes[1].status is REJECTED
    assert "record" in result.outcomes[1].reason


def test_huge_batch_keeps_every_outcome_in_record_order():
    recorder = Recorder()
    worker = in_process_worker(recorder)
    try:
        kinds = ["rel.ok", "rel.async", "bad-json", "rel.fail", "toString"] * 2000
        records = []
        for index, kind in enumerate(kinds):
            body = "{oops" if kind == "bad-json" else json.dumps({"type": kind, "payload": {"i": index}})
            records.append(record(body, message_id=f"m{index}"))
        result = process_sqs_event(worker, {"Records": records})
        expected = {"rel.ok": SUCCEEDED, "rel.async": SUCCEEDED, "bad-json": REJECTED, "rel.fail": FAILED, "toString": REJECTED}
        assert [o.message_id for o in result.outcomes] == [r["messageId"] for r in records]
        assert [o.status for o in result.outcomes] == [expected[k] for k in kinds]
        assert sorted(recorder.handled_ids()) == sorted(f"m{i}" for i, k in enumerate(kinds) if k.startswith("rel.") and k != "rel.fail")
        failures = {item["itemIdentifier"] for item in result.response()["batchItemFailures"]}
        assert failures == {f"m{i}" for i, k in enumerate(kinds) if expected[k] is not SUCCEEDED}
    finally:
        worker.stop()
