"""Scenario 3, I/O-bound batches: ten handlers each waiting 50 ms; batch wall time vs one message's.

Async handlers await ``asyncio.sleep``; sync handlers block in ``time.sleep``
(run in the worker's thread pool). A batch of ten should take about as long
as one message. Powertools' ``BatchProcessor`` (sequential) and
``AsyncBatchProcessor`` are measured alongside for reference.
"""

from __future__ import annotations

import asyncio
import time

from bench import bench_plugin
from bench.common import LambdaContext, Result, isolated_cwd, median, typed_event

ROUNDS = {"full": 20, "quick": 8, "tiny": 1}
#: Each target's figure before the current round of work (the full run of 2026-11-28).
BEFORE = {"async handlers": "1.01x", "sync handlers": "1.02x"}


def letsgo_subjects():
    """The host's handler for the I/O types: every installed plugin plus the bench plugin."""
    from host.config import Settings
    from host.aws.events import handle_event
    from host.core.worker import Worker

    worker = Worker(Settings.from_env({}), plugins=[bench_plugin]).start()
    return lambda event, context: handle_event(event, context, worker=worker)


def peer_subjects():
    """Powertools handlers: BatchProcessor with a sync record handler, AsyncBatchProcessor with an async one."""
    import json

    from aws_lambda_powertools.utilities.batch import (
        AsyncBatchProcessor,
        BatchProcessor,
        EventType,
        async_process_partial_response,
        process_partial_response,
    )

    sync_processor = BatchProcessor(event_type=EventType.SQS)
    async_processor = AsyncBatchProcessor(event_type=EventType.SQS)

    def sync_record(record):
        time.sleep(json.loads(record.body)["payload"]["seconds"])

    async def async_record(record):
        await asyncio.sleep(json.loads(record.body)["payload"]["seconds"])

    def peer_sync(event, context):
        return process_partial_response(event=event, record_handler=sync_record, processor=sync_processor, context=context)

    def peer_async(event, context):
        return async_process_partial_response(event=event, record_handler=async_record, processor=async_processor, context=context)

    return peer_sync, peer_async


def timed(handler, event) -> float:
    """Wall milliseconds of one invocation; raises if any record failed."""
    started = time.perf_counter()
    response = handler(event, LambdaContext())
    elapsed = (time.perf_counter() - started) * 1000
    if response["batchItemFailures"]:
        raise RuntimeError(f"I/O batch reported failures: {response['batchItemFailures']}")
    return elapsed


def run(mode: str) -> Result:
    """Batch wall time of 10 I/O-bound messages against one, async and sync, host and peer."""
    result = Result(
        "3", "I/O-bound batches", mode,
        f"Each handler waits {bench_plugin.IO_SECONDS * 1000:.0f} ms (asyncio.sleep or time.sleep). "
        "Wall time of a 1-record batch and of a 10-record batch, alternating; medians.",
    )
    rounds = ROUNDS[mode]
    with isolated_cwd():
        letsgo = letsgo_subjects()
        peer_sync, peer_async = peer_subjects()
        cases = [
            ("async handlers", "letsgo", letsgo, "BenchAsyncIO", 1.2),
            ("sync handlers", "letsgo", letsgo, "BenchSyncIO", 1.5),
            ("sync handlers", "peer (BatchProcessor)", peer_sync, "BenchSyncIO", None),
            ("async handlers", "peer (AsyncBatchProcessor)", peer_async, "BenchAsyncIO", None),
        ]
        for label, subject, handler, type_, bound in cases:
            one_event = typed_event(type_, [{"seconds": bench_plugin.IO_SECONDS}])
            ten_event = typed_event(type_, [{"seconds": bench_plugin.IO_SECONDS}] * 10)
            timed(handler, one_event)  # warm-up
            ones, tens = [], []
            for _ in range(rounds):
                ones.append(timed(handler, one_event))
                tens.append(timed(handler, ten_event))
            one, ten = median(ones), median(tens)
            result.measure(f"{label}: 1-message batch", subject, one, "ms", f"median of {rounds}")
            result.measure(f"{label}: 10-message batch", subject, ten, "ms", f"median of {rounds}")
            if bound is not None:
                result.target(f"{label}: 10-message batch vs 1 message", ten / one, bound, "<=", before=BEFORE[label])
            else:
                result.measure(f"{label}: 10-message batch vs 1 message", subject, ten / one, "x", "reference, no target")
    return result


def main() -> int:
    from bench.common import scenario_main

    return scenario_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
