"""CloudWatch Embedded Metric Format: opt-in lines per batch on stdout, in the documented structure.

Lambda's path is run for real (``lambda_entry.handler`` in a subprocess, as a
cold start with ``AWS_LAMBDA_RUNTIME_API`` set), and each line is checked
against the EMF specification's shape: ``_aws.Timestamp``, one
``CloudWatchMetrics`` directive with ``Namespace``, ``Dimensions`` and ``Metrics``,
every dimension and metric present at the root, at most 100 values a metric.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host import hookimpl
from host.aws.emf import MAX_VALUES, batch_documents
from host.core.dispatch import Outcome, Status
from host.testing import run_batch

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"Count", "Milliseconds"}


def check_emf(document: dict) -> None:
    """Fail unless ``document`` is a valid EMF document (the specification's rules that apply here)."""
    aws = document["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and len(directives) == 1
    directive = directives[0]
    assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
    assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
    for dimension_set in directive["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        for key in dimension_set:
            assert isinstance(document[key], str) and document[key], f"dimension {key} must be a non-empty string"
    assert 1 <= len(directive["Metrics"]) <= 100
    for metric in directive["Metrics"]:
        assert set(metric) <= {"Name", "Unit", "StorageResolution"}
        assert metric["Unit"] in UNITS
        value = document[metric["Name"]]
        if isinstance(value, list):
            assert 1 <= len(value) <= MAX_VALUES
            assert all(isinstance(v, (int, float)) for v in value)
        else:
            assert isinstance(value, (int, float))


def by_key(documents: list[dict]) -> dict[tuple[str, str], list[dict]]:
    found: dict[tuple[str, str], list[dict]] = {}
    for document in documents:
        found.setdefault((document["type"], document["outcome"]), []).append(document)
    return found


async def ok(message, ctx):
    pass


def boom(message, ctx):
    raise RuntimeError("no")


class Types:
    @hookimpl
    def letsgo_register_messages(self, register):
        register("ok", ok)
        register("boom", boom)


def test_documents_count_each_type_and_outcome_and_carry_durations():
    outcomes = [
        Outcome(Status.SUCCEEDED, "a", "ok", "p", duration_ms=2.5),
        Outcome(Status.SUCCEEDED, "b", "ok", "p", duration_ms=4.0),
        Outcome(Status.FAILED, "c", "ok", "p", reason="x", duration_ms=1.0),
        Outcome(Status.REJECTED, "d", "made-up", None, reason="unknown type"),
        Outcome(Status.REJECTED, "e", None, None, reason="not JSON"),
    ]
    documents = batch_documents(outcomes, "LetsGoWorker", timestamp_ms=1_764_000_000_000, request_id="req-1")
    for document in documents:
        check_emf(document)
        assert document["requestId"] == "req-1"
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LetsGoWorker"
        assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["type", "outcome"], ["outcome"]]
    found = by_key(documents)
    assert set(found) == {("ok", "succeeded"), ("ok", "failed"), ("(unknown)", "rejected")}
    assert found[("ok", "succeeded")][0]["Messages"] == 2
    assert found[("ok", "succeeded")][0]["HandlerDuration"] == [2.5, 4.0]
    assert found[("ok", "failed")][0]["Messages"] == 1
    # Rejected: two messages under one bounded label, and no duration (no handler ran).
    rejected = found[("(unknown)", "rejected")][0]
    assert rejected["Messages"] == 2
    assert "HandlerDuration" not in rejected
    assert [m["Name"] for m in rejected["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["Messages"]


def test_more_than_100_durations_make_more_lines_and_count_once():
    outcomes = [Outcome(Status.SUCCEEDED, str(i), "ok", "p", duration_ms=1.0 + i) for i in range(250)]
    documents = batch_documents(outcomes, "NS")
    for document in documents:
        check_emf(document)
    assert len(documents) == 3
    assert [len(d["HandlerDuration"]) for d in documents] == [100, 100, 50]
    assert [d.get("Messages") for d in documents] == [250, None, None]
    assert sum(len(d["HandlerDuration"]) for d in documents) == 250


def test_off_by_default_nothing_is_written(make_worker, capsys):
    worker = make_worker(plugins=[Types()], entry_points=False)
    run_batch(worker, {"type": "ok", "payload": {}})
    assert "_aws" not in capsys.readouterr().out


def test_on_each_batch_writes_its_lines(make_worker, capsys):
    worker = make_worker(plugins=[Types()], env={"LETSGO_WORKER_METRICS": "emf",
                                                  "LETSGO_WORKER_METRICS_NAMESPACE": "Shop/Worker"},
                         entry_points=False)
    run_batch(worker, {"type": "ok", "payload": {}}, {"type": "ok", "payload": {}}, {"type": "boom", "payload": {}})
    run_batch(worker, "{not json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    for document in lines:
        check_emf(document)
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop/Worker"
    found = by_key(lines)
    assert found[("ok", "succeeded")][0]["Messages"] == 2
    assert found[("boom", "failed")][0]["Messages"] == 1
    assert len(found[("boom", "failed")][0]["HandlerDuration"]) == 1
    assert found[("(unknown)", "rejected")][0]["Messages"] == 1


def test_a_bad_setting_is_a_start_up_error_naming_it(make_worker):
    from host.errors import ConfigError

    with pytest.raises(ConfigError, match="LETSGO_WORKER_METRICS='statsd' is invalid"):
        make_worker(env={"LETSGO_WORKER_METRICS": "statsd"}, entry_points=False)
    with pytest.raises(ConfigError, match="LETSGO_WORKER_METRICS_NAMESPACE='AWS/Lambda' is invalid"):
        make_worker(env={"LETSGO_WORKER_METRICS_NAMESPACE": "AWS/Lambda"}, entry_points=False)


LAMBDA_SCRIPT = """
import json, sys, time
import lambda_entry
from host.testing import sqs_event

class Context:
    aws_request_id = "req-42"
    function_name = "letsgo-worker"
    def get_remaining_time_in_millis(self):
        return 60000

event = sqs_event({"type": "letsgo:contact", "payload": {}}, '{"type": "letsgo:unheard-of"}')
before = set(sys.modules)
result = lambda_entry.handler(event, Context())
loaded = sorted(name for name in set(sys.modules) - before if name.split(".")[0] in ("prometheus_client", "host"))
print(json.dumps({"result": result, "loaded": loaded}), file=sys.stderr)
"""


def run_lambda(tmp_path: Path, **env: str) -> tuple[list[dict], dict]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "AWS_", "PROMETHEUS"))}
    environ.update(AWS_LAMBDA_RUNTIME_API="127.0.0.1:9", AWS_LAMBDA_FUNCTION_NAME="letsgo-worker", **env)
    done = subprocess.run(
        [sys.executable, "-c", LAMBDA_SCRIPT], cwd=tmp_path, env=environ, capture_output=True, text=True,
        timeout=120, check=True,
    )
    documents = [json.loads(line) for line in done.stdout.splitlines() if '"_aws"' in line]
    return documents, json.loads(done.stderr.strip().splitlines()[-1])


def test_in_lambda_the_lines_are_on_stdout_and_prometheus_is_never_imported(tmp_path):
    before = int(time.time() * 1000)
    documents, report = run_lambda(tmp_path, LETSGO_WORKER_METRICS="emf")
    assert len(report["result"]["batchItemFailures"]) == 2  # an invalid contact payload and an unknown type
    for document in documents:
        check_emf(document)
        assert document["_aws"]["Timestamp"] >= before
        assert document["requestId"] == "req-42"
    found = by_key(documents)
    assert found[("letsgo:contact", "rejected")][0]["Messages"] == 1
    assert found[("(unknown)", "rejected")][0]["Messages"] == 1
    assert not [name for name in report["loaded"] if name.startswith("prometheus_client")]
    assert "host.aws.emf" in report["loaded"]


def test_in_lambda_off_nothing_more_is_imported(tmp_path):
    documents, report = run_lambda(tmp_path)
    assert documents == []
    assert not [name for name in report["loaded"] if name.startswith(("prometheus_client", "host.aws.emf", "host.ops"))]
