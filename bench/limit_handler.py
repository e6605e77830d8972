"""The limit: the least a correct SQS batch handler can do for ``OrderNew``.

``json.loads``, one pydantic model, a dict from type to handler, and the
ReportBatchItemFailures response. No plugins, no concurrency, no context: the
fastest thing possible, the yardstick the host is measured against. It logs
what the handler logs as a JSON line on standard output, like the host and the
peer in Lambda, with the least machinery that does so.
"""

import json
import logging
import sys

from pydantic import BaseModel


class OrderNew(BaseModel):
    orderId: str
    customerId: str


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message."""

    def format(self, record):
        return json.dumps({"time": record.created, "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


logger = logging.getLogger("bench.limit.orders")
_stdout = logging.StreamHandler(sys.stdout)
_stdout.setFormatter(JsonLines())
logger.addHandler(_stdout)
logger.setLevel(logging.INFO)
logger.propagate = False


def handle_order_new(order: OrderNew) -> None:
    """The same work as example_orders' handler: one INFO log line."""
    logger.info("new order %s for customer %s", order.orderId, order.customerId)


HANDLERS = {"OrderNew": (OrderNew, handle_order_new)}


def handler(event, context):
    """Handle an SQS batch; every record that raised is reported as failed."""
    failures = []
    for record in event["Records"]:
        try:
            body = json.loads(record["body"])
            model, handle = HANDLERS[body["type"]]
            handle(model.model_validate(body["payload"]))
        except Exception:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
