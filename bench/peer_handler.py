"""The peer: what a Python team writes instead, AWS Lambda Powertools' batch utility.

``BatchProcessor(event_type=EventType.SQS, model=...)`` with
``process_partial_response`` and a pydantic model of the record whose body is
parsed as JSON into the message model, as the Powertools documentation shows,
and Powertools' ``Logger`` (JSON lines on standard output, INFO by default) for
the handler's log line. (The documentation's examples add ``Tracer`` too; it is
left out, as many teams do, and it would only slow the peer down.)
"""

from typing import Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.parser.types import Json
from pydantic import BaseModel


class OrderNew(BaseModel):
    orderId: str
    customerId: str


class OrderNewMessage(BaseModel):
    type: Literal["OrderNew"]
    payload: OrderNew


class OrderNewRecord(SqsRecordModel):
    body: Json[OrderNewMessage]


logger = Logger(service="orders")
processor = BatchProcessor(event_type=EventType.SQS, model=OrderNewRecord)


def record_handler(record: OrderNewRecord) -> None:
    """The same work as example_orders' handler: one INFO log line."""
    order = record.body.payload
    logger.info("new order %s for customer %s", order.orderId, order.customerId)


def handler(event, context):
    """Handle an SQS batch; Powertools reports failed records in batchItemFailures."""
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
