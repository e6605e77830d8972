"""``letsgo-worker dlq list|redrive|purge --sqs QUEUE_URL [--dlq DLQ_URL]`` as a subprocess, against moto's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from moto_server import aws, create_queue, moto_server  # noqa: F401 (fixtures)

ORDER = json.dumps({"type": "OrderNew", "payload": {"orderId": "A-17"}})


def run(cwd, server, *args: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "host.cli", "dlq", *args], cwd=cwd, env={**clean, **server.environ()},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def queues(aws):
    """A queue whose dead-letter queue (from its RedrivePolicy) holds two messages; returns URLs and ids."""
    sqs = aws.client("sqs")
    queue = create_queue(sqs, dlq_max_receive_count=3)
    queue["ids"] = [sqs.send_message(QueueUrl=queue["dlq_url"], MessageBody=body)["MessageId"]
                    for body in (ORDER, "plain text")]
    queue["sqs"] = sqs
    return queue


def waiting(queue) -> int:
    attributes = queue["sqs"].get_queue_attributes(
        QueueUrl=queue["url"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_list_shows_the_dead_letters_and_says_a_look_is_a_receive(queues, aws, tmp_path):
    result = run(tmp_path, aws, "list", "--sqs", queues["url"])
    assert result.returncode == 0, result.stderr
    assert "no true peek" in result.stderr and "receive count" in result.stderr
    for message_id in queues["ids"]:
        assert f"{message_id}  received 1 time" in result.stdout
    assert '"orderId": "A-17"' in result.stdout and "2 dead-lettered messages" in result.stdout
    letters = json.loads(run(tmp_path, aws, "list", "--json", "--sqs", queues["url"]).stdout)
    assert sorted(letter["id"] for letter in letters) == sorted(queues["ids"])
    assert all(letter["receive_count"] == 2 for letter in letters)  # the first look was a receive


def test_redrive_one_then_all(queues, aws, tmp_path):
    first, second = queues["ids"]
    result = run(tmp_path, aws, "redrive", first, "--sqs", queues["url"])
    assert result.returncode == 0 and "redrove 1 message to the queue, one message at a time" in result.stdout
    assert waiting(queues) == 1
    result = run(tmp_path, aws, "redrive", "--all", "--sqs", queues["url"])
    assert result.returncode == 0 and "redrove 1 message" in result.stdout, result.stderr
    assert waiting(queues) == 2
    assert json.loads(run(tmp_path, aws, "list", "--json", "--sqs", queues["url"]).stdout) == []


def test_redrive_of_an_unknown_id_exits_2_and_moves_nothing(queues, aws, tmp_path):
    result = run(tmp_path, aws, "redrive", queues["ids"][0], "no-such-id", "--sqs", queues["url"])
    assert result.returncode == 2 and "not in the dead-letter queue: no-such-id" in result.stderr
    assert waiting(queues) == 0


def test_purge_needs_yes_when_not_on_a_terminal(queues, aws, tmp_path):
    refused = run(tmp_path, aws, "purge", "--sqs", queues["url"])
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    result = run(tmp_path, aws, "purge", "--yes", "--sqs", queues["url"])
    assert result.returncode == 0 and "purged 2 dead-lettered messages" in result.stdout
    assert json.loads(run(tmp_path, aws, "list", "--json", "--sqs", queues["url"]).stdout) == []


def test_a_queue_without_a_redrive_policy_needs_dlq(aws, tmp_path):
    sqs = aws.client("sqs")
    plain = create_queue(sqs)["url"]
    dead = create_queue(sqs)["url"]
    sqs.send_message(QueueUrl=dead, MessageBody=ORDER)
    refused = run(tmp_path, aws, "list", "--sqs", plain)
    assert refused.returncode == 2 and "no dead-letter queue" in refused.stderr and "--dlq" in refused.stderr
    letters = json.loads(run(tmp_path, aws, "list", "--json", "--sqs", plain, "--dlq", dead).stdout)
    assert [letter["body"] for letter in letters] == [ORDER]


def test_a_queue_that_does_not_exist_is_one_line_and_exit_2(aws, tmp_path):
    result = run(tmp_path, aws, "list", "--sqs", f"{aws.url}/123456789012/no-such-queue")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "letsgo-worker: error:" in result.stderr and "no-such-queue" in result.stderr
