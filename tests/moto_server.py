"""moto's server on 127.0.0.1 for tests that talk to SQS and DynamoDB through boto3.

A test module uses it with ``from moto_server import aws, moto_server  # noqa: F401``:
``moto_server`` (module scope) runs ``python -m moto.server`` on a free port and stops it
by its PID; ``aws`` (function scope) points boto3 at it through the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


#: moto's own app served one request at a time (``python -m moto.server`` serves each in a thread).
SERIALIZED_SERVER = """
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
run_simple("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=False,
           request_handler=MotoRequestHandler)
"""


class MotoServer:
    """One moto server process bound to 127.0.0.1 on a port of its choosing.

    ``serialized=True`` handles one request at a time. DynamoDB applies the
    conditional writes to an item one after another; moto checks a condition
    and writes in two steps, so under its threaded server two concurrent
    conditional puts can both succeed. Serializing requests restores the
    guarantee the real service gives (the clients still send concurrently).
    It cannot serve SQS long polls beside other requests, so SQS tests use the
    threaded ``python -m moto.server``.
    """

    def __init__(self, serialized: bool = False) -> None:
        self.serialized = serialized
        self.process: subprocess.Popen | None = None
        self.url = ""
        self._log = tempfile.TemporaryFile(mode="w+")

    def start(self, timeout: float = 60.0) -> MotoServer:
        command = ["-c", SERIALIZED_SERVER] if self.serialized else ["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"]
        self.process = subprocess.Popen(
            [sys.executable, *command], stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._log.seek(0)
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", self._log.read())
            if match:
                self.url = match.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        self._log.seek(0)
        raise RuntimeError(f"moto server did not start: {self._log.read()[-2000:]}")

    def environ(self) -> dict[str, str]:
        """Variables that send boto3 (and the worker) to this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def client(self, service: str):
        import boto3

        return boto3.session.Session().client(
            service, endpoint_url=self.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def moto_server():
    """The threaded moto server of this test module (a module may override it with ``serialized_moto_server``)."""
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


def serialized_moto_server():
    """Body of a module's ``moto_server`` override that needs DynamoDB's atomic conditional writes."""
    server = MotoServer(serialized=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """boto3 in this test process talks to the moto server."""
    for name, value in moto_server.environ().items():
        monkeypatch.setenv(name, value)
    return moto_server


def unique(prefix: str) -> str:
    """A name no other test uses on the shared server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_queue(sqs, name: str | None = None, *, dlq_max_receive_count: int | None = None, **attributes) -> dict:
    """Create a queue (and a dead-letter queue when ``dlq_max_receive_count`` is given); return their URLs/ARNs."""
    import json

    result = {}
    if dlq_max_receive_count is not None:
        dlq_url = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": dlq_max_receive_count})
        result["dlq_url"] = dlq_url
    attributes = {key: str(value) for key, value in attributes.items()}
    result["url"] = sqs.create_queue(QueueName=name or unique("queue"), Attributes=attributes)["QueueUrl"]
    return result
