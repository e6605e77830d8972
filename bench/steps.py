"""Where a warm message's time goes: each step of the Lambda path timed on its own.

``python -m bench.steps [contact|order]`` prints a Markdown table of
microseconds per message: the whole warm batch first, then each step the batch
is made of, measured alone in the same warm process (the fastest of several
repeats, which a busy machine disturbs least). The steps do not add up to the
whole: what is left is the batch's own bookkeeping (its coroutines, the record
checks, the chains) and the call layers between them. ``bench/FINDINGS.md``
quotes the table; nothing here is a target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import timeit
from collections.abc import Callable

from bench.common import (
    CONTACT_PAYLOAD,
    LAMBDA_ENVIRON,
    LambdaContext,
    clean_environ,
    isolated_cwd,
    order_event,
    stdout_to,
    typed_event,
)

#: Batches of the two message mixes issue 16 measures: LetsGo's contact form (Slack unset), and OrderNew.
KINDS = ("contact", "order")
DISTINCT_EVENTS = 64


def events_of(kind: str) -> list[dict]:
    """Distinct 10-record events of ``kind``."""
    if kind == "contact":
        return [typed_event("letsgo:contact", [dict(CONTACT_PAYLOAD, name=f"Ada {b}-{i}") for i in range(10)])
                for b in range(DISTINCT_EVENTS)]
    return [order_event(b) for b in range(DISTINCT_EVENTS)]


def fastest(step: Callable[[], object], number: int, per: int = 1) -> float:
    """Microseconds per message of ``step`` (which handles ``per`` messages): the fastest of seven repeats."""
    return min(timeit.repeat(step, number=number, repeat=7)) / number / per * 1e6


def measure(kind: str) -> list[tuple[str, float]]:
    """Each step's microseconds per message, in a warm process with the Lambda environment."""
    import lambda_entry
    from host.aws.lambda_settle import settle_lambda_batch
    from host.core import batch, dispatch, loops
    from host.core.batch_report import log_batch
    from host.core.deadline import Deadline
    from host.core.worker import get_worker

    context = LambdaContext()
    events = events_of(kind)
    for event in events:  # warm-up: plugins loaded, payload models built, the loop made
        lambda_entry.handler(event, context)
    worker = get_worker()
    records = events[0]["Records"]
    body, attributes = records[0]["body"], records[0]["attributes"]
    parsed = dispatch.parse_body(body)
    entry, payload = dispatch.resolve(worker, parsed)

    def ctx():
        return dispatch.message_context(worker, message_id="m", receive_count=1, type=entry.type,
                                        plugin=entry.plugin, attributes=attributes, lambda_context=context)

    message, message_ctx = dispatch.Message(entry.type, payload, "m", parsed), ctx()

    async def handler_alone():
        await entry.handler(message, message_ctx)

    async def ten_tasks():
        async def nothing():
            pass

        [asyncio.create_task(nothing()) for _ in range(10)]  # noqa: B018 (the tasks run on the loop turn below)
        await asyncio.sleep(0)

    async def nothing():
        pass

    async def ten_dispatches():
        for record in records:
            await dispatch.dispatch(worker, record["body"], message_id=record["messageId"], receive_count=1,
                                    attributes=record["attributes"], lambda_context=context)

    outcomes = batch.run(batch.process_records(worker, records, context))
    turn = iter(range(10**9))
    return [
        ("whole warm batch (`lambda_entry.handler`)",
         fastest(lambda: lambda_entry.handler(events[next(turn) % DISTINCT_EVENTS], context), 200, 10)),
        ("dispatch alone, the ten records one after the other", fastest(lambda: loops.run(ten_dispatches()), 200, 10)),
        ("- parsing the body (`json`, the \"type\" checks)", fastest(lambda: dispatch.parse_body(body), 3000)),
        ("- looking the type up, validating the payload", fastest(lambda: dispatch.resolve(worker, parsed), 3000)),
        ("- `ctx` and its logger", fastest(ctx, 3000)),
        ("- the `Message` and `Outcome` objects", fastest(
            lambda: (dispatch.Message(entry.type, payload, "m", parsed),
                     dispatch.Outcome(dispatch.Status.SUCCEEDED, "m", entry.type, entry.plugin, duration_ms=0.1)),
            3000)),
        ("- the handler itself", fastest(lambda: loops.run(handler_alone()), 1000)
         - fastest(lambda: loops.run(nothing()), 1000)),
        ("an asyncio task per record and its loop turn", fastest(lambda: loops.run(ten_tasks()), 1000, 10)),
        ("running the batch coroutine on the thread's loop (`run`)", fastest(lambda: loops.run(nothing()), 1000, 10)),
        ("the deadline check", fastest(lambda: Deadline(context, 500).passed(), 3000)),
        ("the batch summary line", fastest(
            lambda: log_batch(records, outcomes, context, 0, False, time.perf_counter()), 1000, 10)),
        ("the batch response (`settle_lambda_batch`)", fastest(
            lambda: settle_lambda_batch(worker, records, outcomes), 1000, 10)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", choices=KINDS, default="contact", help="the message mix (default contact)")
    args = parser.parse_args(argv)
    os.environ.clear()
    os.environ.update(clean_environ(**LAMBDA_ENVIRON))
    with isolated_cwd() as directory, stdout_to(directory / "stdout.log"):  # log lines written for real, as in Lambda
        rows = measure(args.kind)
    print(f"| step ({args.kind}, 10-record batches) | us per message |\n|---|---|")
    for name, microseconds in rows:
        print(f"| {name} | {microseconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
