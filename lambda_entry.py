"""The AWS Lambda entry point: ``lambda_entry.handler`` (the Docker image's CMD)."""

from host.events import handle_event


def handler(event, context):
    """Handle an SQS batch (returns ``{"batchItemFailures": [...]}``) or a scheduled tick."""
    return handle_event(event, context)
