"""boto3 clients for SQS and DynamoDB, made once per process and shared between threads.

boto3 is an optional extra (``pip install 'letsgo-worker[aws]'``) and is imported
only here, on first use: creating a client costs tens of milliseconds, so a
warm Lambda reuses it across invocations.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from host.errors import ConfigError, StartupError

_clients: dict[tuple[str, str | None, str | None], Any] = {}
_lock = threading.Lock()

_REGION_IN_HOST = re.compile(r"(?:^|\.)([a-z]{2}(?:-[a-z]+)+-\d+)\.")


def region_from_queue_url(queue_url: str) -> str | None:
    """The region in an SQS queue URL (``https://sqs.us-east-1.amazonaws.com/...``), if any."""
    host = queue_url.split("://", 1)[-1].split("/", 1)[0]
    match = _REGION_IN_HOST.search(host)
    return match.group(1) if match else None


def aws_client(service: str, region: str | None = None) -> Any:
    """A shared boto3 client for ``service`` in ``region`` (None: boto3's own lookup).

    ``AWS_ENDPOINT_URL`` is part of the cache key, so a process that points
    boto3 at another endpoint (a test against a local emulator) gets a fresh
    client. boto3 reads the variable itself, as well as its per-service
    forms, so it is not passed on.
    """
    from host.config import Settings

    key = (service, region, Settings.from_env().aws_endpoint_url)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            try:
                import boto3
                from botocore.exceptions import NoRegionError
            except ImportError:
                raise StartupError(
                    f"calling AWS {service.upper()} needs boto3: pip install 'letsgo-worker[aws]'"
                ) from None
            try:
                # A private session: boto3's default session is not safe to share between threads.
                client = boto3.session.Session().client(service, region_name=region)
            except NoRegionError:
                raise ConfigError(
                    f"no AWS region for {service.upper()}: set AWS_REGION (or AWS_DEFAULT_REGION)"
                ) from None
            _clients[key] = client
    return client
