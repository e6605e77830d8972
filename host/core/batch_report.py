"""What a batch tells once it is done: a line per record that did not succeed, a summary, EMF metrics.

Called by :func:`host.core.batch.process_records` for every batch, in Lambda and locally.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from host.core.dispatch import Outcome, Status
from host.core.logs import log_fields
from host.core.records import record_group, record_receive_count

logger = logging.getLogger("letsgo.batch")


def write_emf(outcomes: list[Outcome], settings: Any, lambda_context: Any) -> None:
    """The batch's CloudWatch EMF lines, with ``LETSGO_WORKER_METRICS=emf`` (the module loads only then)."""
    from host.aws.emf import write_batch_metrics

    request_id = getattr(lambda_context, "aws_request_id", None)
    try:
        write_batch_metrics(
            outcomes, settings.metrics_namespace,
            request_id=request_id if isinstance(request_id, str) else None,
        )
    except Exception:  # metrics are an account of the batch, never a reason to fail it
        logger.exception("could not write the batch's metrics (LETSGO_WORKER_METRICS=emf)")


def log_batch(
    records: list[Any], outcomes: list[Outcome], lambda_context: Any, fifo_groups: int, deadline_reached: bool,
    began: float,
) -> None:
    """One line per record that did not succeed (successes at DEBUG), and the batch's summary line."""
    request_id = getattr(lambda_context, "aws_request_id", None)
    request_id = request_id if isinstance(request_id, str) else None
    succeeded = failed = rejected = 0
    log_successes = logger.isEnabledFor(logging.DEBUG)
    for index, outcome in enumerate(outcomes):
        status = outcome.status
        if status is Status.SUCCEEDED:
            succeeded += 1
            if not log_successes:
                continue  # their line is at DEBUG: build nothing for it
        elif status is Status.FAILED:
            failed += 1
        else:
            rejected += 1
        record = records[index]
        fields = {
            "message_id": outcome.message_id or None,
            "record_index": None if outcome.message_id else index,
            "type": outcome.type,
            "plugin": outcome.plugin,
            "outcome": outcome.status.value,
            "duration_ms": round(outcome.duration_ms, 1),
            "receive_count": record_receive_count(record) if isinstance(record, dict) else None,
            "group": record_group(record),
            "request_id": request_id,
        }
        if outcome.ok:
            log_fields(logger, logging.DEBUG, f"message {outcome.message_id} ({outcome.type}) succeeded", **fields)
            continue
        handler_error = outcome.error if outcome.status is Status.FAILED else None
        if handler_error is not None and (fields["receive_count"] or 1) > 1:
            handler_error = None  # its traceback was logged at its first receive: a retry's failure is one line
        log_fields(
            logger, logging.ERROR if handler_error is not None or not outcome.message_id else logging.WARNING,
            f"message {outcome.message_id or '#' + str(index)} ({outcome.type or 'unknown type'}) "
            f"{outcome.status.value}: {outcome.reason}",
            reason=outcome.reason, exc_info=handler_error, **fields,
        )
    duration = (time.perf_counter() - began) * 1000
    log_fields(
        logger, logging.INFO,
        f"batch of {len(outcomes)}: {succeeded} succeeded, {failed} failed, {rejected} rejected in {duration:.0f} ms",
        records=len(outcomes), succeeded=succeeded, failed=failed,
        rejected=rejected, duration_ms=round(duration, 1), fifo_groups=fifo_groups or None,
        deadline_reached=True if deadline_reached else None, request_id=request_id,
    )
