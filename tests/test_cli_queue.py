"""``letsgo-worker queue stats|list`` as a subprocess, on a local queue file and on SQS (moto's server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

from host.core.dispatch import Outcome, Status
from host.local.queue import LocalQueue

ORDER = json.dumps({"type": "OrderNew", "payload": {"orderId": "A-17"}})


def run(cwd, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LETSGO_")}
    return subprocess.run([sys.executable, "-m", "host.cli", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def db(tmp_path):
    """Two visible messages, one in flight, one delayed and one dead letter."""
    path = tmp_path / "worker.db"
    with LocalQueue(path, max_receive_count=1) as queue:
        queue.enqueue_many([("dead-1", "not json")])
        records = queue.receive(10, 1)
        queue.settle(records, [Outcome(Status.REJECTED, "dead-1", reason="body is not valid JSON")])
        queue.enqueue_many([("flight-1", ORDER)])
        queue.receive(1, 1)
        queue.enqueue_many([("order-1", ORDER), ("text-1", "hello\x1b[31m")])
        queue.enqueue_many([("later-1", ORDER)], delay_seconds=600)
    return path


def test_stats_json(db, tmp_path):
    result = run(tmp_path, "queue", "stats", "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["visible"], stats["in_flight"], stats["delayed"], stats["dead_letter"]) == (2, 1, 1, 1)
    assert stats["approximate"] is False and stats["oldest_age_seconds"] >= 0 and stats["queue"] == str(db)


def test_stats_text_piped_is_just_the_table(db, tmp_path):
    result = run(tmp_path, "queue", "stats", "--db", str(db))
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["visible", "in", "delayed", "dead", "oldest"]
    assert lines[0].split()[-1] == "2" and lines[3].split()[-1] == "1"


@pytest.mark.parametrize(("state", "ids"), [
    ("visible", ["order-1", "text-1"]), ("in_flight", ["flight-1"]), ("in-flight", ["flight-1"]),
    ("delayed", ["later-1"]), ("dead_letter", ["dead-1"]),
])
def test_list_by_state_json(db, tmp_path, state, ids):
    result = run(tmp_path, "queue", "list", "--state", state, "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert [view["id"] for view in json.loads(result.stdout)] == ids


def test_list_by_type_and_limit(db, tmp_path):
    typed = json.loads(run(tmp_path, "queue", "list", "--type", "OrderNew", "--json", "--db", str(db)).stdout)
    assert [view["id"] for view in typed] == ["order-1"] and typed[0]["type"] == "OrderNew"
    limited = json.loads(run(tmp_path, "queue", "list", "--limit", "1", "--json", "--db", str(db)).stdout)
    assert [view["id"] for view in limited] == ["order-1"]


def test_list_text_escapes_control_characters(db, tmp_path):
    result = run(tmp_path, "queue", "list", "--db", str(db))
    assert "\x1b" not in result.stdout and "text-1" in result.stdout and "order-1  OrderNew  received 0" in result.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["--state", "waiting"], "one of visible, delayed, in_flight, dead_letter"),
    (["--limit", "0"], "1 or more"),
    (["--dlq", "http://x/1/q"], "--dlq goes with --sqs"),
])
def test_bad_usage_exits_2_with_one_line(db, tmp_path, args, says):
    result = run(tmp_path, "queue", "list", *args, "--db", str(db))
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr


def test_a_missing_database_is_an_error(tmp_path):
    result = run(tmp_path, "queue", "stats", "--db", str(tmp_path / "nowhere.db"))
    assert result.returncode == 2 and "no local queue database at" in result.stderr
    assert not (tmp_path / "nowhere.db").exists()


@pytest.mark.parametrize("command", [["queue", "stats"], ["queue", "list"], ["dlq", "list"], ["dlq", "redrive"],
                                     ["dlq", "purge"]])
def test_help_has_a_description_the_environment_and_an_example(tmp_path, command):
    result = run(tmp_path, *command, "--help")
    assert result.returncode == 0
    text = result.stdout
    assert "LETSGO_WORKER_DB" in text and "AWS_REGION" in text and "--sqs" in text
    assert f"letsgo-worker {' '.join(command)}" in text.split("examples:")[1]


def test_stats_and_list_on_sqs(aws, tmp_path):
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=3)
    sqs.send_message(QueueUrl=queue["url"], MessageBody=ORDER)
    sqs.send_message(QueueUrl=queue["url"], MessageBody=ORDER, DelaySeconds=600)
    sqs.send_message(QueueUrl=queue["dlq_url"], MessageBody=ORDER)
    result = run(tmp_path, "queue", "stats", "--json", "--sqs", queue["url"], env=aws.environ())
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["visible"], stats["delayed"], stats["dead_letter"], stats["approximate"]) == (1, 1, 1, True)
    listed = run(tmp_path, "queue", "list", "--state", "dead_letter", "--json", "--sqs", queue["url"], env=aws.environ())
    assert [view["body"] for view in json.loads(listed.stdout)] == [ORDER]
    assert "no true peek" in listed.stderr
    refused = run(tmp_path, "queue", "list", "--sqs", queue["url"], env=aws.environ())
    assert refused.returncode == 2 and "only its dead letters can be listed" in refused.stderr
