"""The AWS Lambda entry point: ``lambda_entry.handler`` (the Docker image's CMD).

Imports stay small on purpose: plugins load on the first invocation, and heavy
SDKs only when a message needs them.
"""

import os

from host.aws.events import handle_event
from host.core.worker import use_entry_point_cache

#: The plugins' entry points, frozen when the image is built (``letsgo-worker plugins --freeze``,
#: see the Dockerfile): the first invocation reads them here instead of scanning every installed
#: distribution, and scans as before when the file is missing or no longer matches what is installed.
ENTRY_POINTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "letsgo-worker-entry-points.json")
use_entry_point_cache(ENTRY_POINTS_FILE)

if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    # In a Lambda execution environment: the worker's logs become JSON lines on
    # standard output, which CloudWatch Logs Insights reads field by field.
    # A bad LETSGO_WORKER_LOG_LEVEL fails the start-up with the error naming it.
    from host.config import Settings
    from host.core.logs import configure_logging

    _settings = Settings.from_env()
    configure_logging(_settings.log_level, log_format=_settings.log_format)


def handler(event, context):
    """Handle an SQS batch (returns ``{"batchItemFailures": [...]}``) or a scheduled tick (returns None).

    Raises for an event that is neither, and when a scheduled hook failed, so
    that Lambda reports the invocation as failed.
    """
    return handle_event(event, context)
