"""Helpers for tests that run ``lambda_entry.handler`` on batches received from moto's SQS.

``receive_event`` receives messages as Lambda's event source mapping does and
returns them as a Lambda SQS event (the shape of tests/fixtures/aws/sqs-standard-batch.json);
``ClientSpy`` records what the worker asked of SQS or S3 while passing every call on.
"""

from __future__ import annotations

import base64
import time
from typing import Any


class Context:
    """A Lambda context with a minute to go."""

    aws_request_id = "5a8b2c3d-0000-4000-8000-0000000000aa"
    function_name = "letsgo-worker-test"

    def __init__(self, timeout_ms: int = 60_000) -> None:
        self.deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def queue_arn(sqs, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def lambda_record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    """One message of ``ReceiveMessage`` as Lambda hands it to a function."""
    attributes = {}
    for name, value in message.get("MessageAttributes", {}).items():
        item = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        attributes[name] = item
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": arn.split(":")[3],
    }


def receive_event(sqs, queue_url: str, *, wait: int = 5, count: int = 10) -> dict[str, Any]:
    """Up to ``count`` messages received within ``wait`` seconds, as a Lambda SQS event (``Records`` may be empty)."""
    arn = queue_arn(sqs, queue_url)
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=count, WaitTimeSeconds=wait,
        AttributeNames=["All"], MessageAttributeNames=["All"],
    ).get("Messages", [])
    return {"Records": [lambda_record(message, arn) for message in messages]}


def receive_until(sqs, queue_url: str, *, count: int, timeout: float = 60) -> dict[str, Any]:
    """Receive until ``count`` messages came in one event or ``timeout`` passed (then what came)."""
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while len(records) < count and time.monotonic() < deadline:
        records += receive_event(sqs, queue_url, wait=2, count=count - len(records))["Records"]
    return {"Records": records}


class ClientSpy:
    """A boto3 client that records the requests of the methods named in ``watched``, then makes them."""

    def __init__(self, client: Any, watched: tuple[str, ...]) -> None:
        self._client = client
        self._watched = watched
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._watched:
            return attribute

        def call(**request: Any) -> Any:
            self.calls.append((name, request))
            return attribute(**request)

        return call

    def requests(self, name: str) -> list[dict[str, Any]]:
        return [request for method, request in self.calls if method == name]


def spy_on_clients(monkeypatch, *watched: str) -> dict[str, ClientSpy]:
    """Make every ``aws_client(service)`` of the worker a :class:`ClientSpy`; return the spies by service."""
    import host.aws.clients as clients

    real = clients.aws_client
    spies: dict[str, ClientSpy] = {}

    def spied(service: str, region: str | None = None) -> ClientSpy:
        if service not in spies:
            spies[service] = ClientSpy(real(service, region), watched)
        return spies[service]

    monkeypatch.setattr(clients, "aws_client", spied)
    return spies
