"""SQS batch semantics: run a batch's records through dispatch, report what did not succeed.

The one place that knows the shape of an SQS record. Used by the Lambda entry
point and, with ``eventSource: "letsgo:local"``, by the local runtime.

- Records run concurrently: async handlers on one event loop, sync handlers in
  the worker's bounded thread pool (inside :func:`host.core.dispatch.dispatch`).
- FIFO: the records of one ``MessageGroupId`` run one after the other, in batch
  order; after one does not succeed, the group's later records are reported
  failed without running, so SQS redelivers them in order. Other groups go on.
- Deadline: with a Lambda context, no record starts once
  ``get_remaining_time_in_millis()`` is below ``LETSGO_WORKER_DEADLINE_MARGIN_MS``,
  and records still running then are reported failed; the batch returns before
  Lambda's timeout instead of being killed with every record unreported.
- Handler timeout: a record still running after ``LETSGO_WORKER_HANDLER_TIMEOUT``
  (unset: the visibility timeout less 10%) fails alone, "timed out after N s";
  a sync handler's thread is replaced in the worker's pool.
- Any exception a handler raises, ``BaseException`` included, fails its own record only.
- ``on_outcome``: an optional callback told each record's outcome as soon as it is
  known, so the local runtime settles a message without waiting for its batch.
- Logs: one structured line per record that did not succeed, successes at DEBUG,
  and one summary line per batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from host.aws.large_messages import is_pointer
from host.core.deadline import Deadline, cancel_grace
from host.core.dispatch import Outcome, Status, dispatch, message_context, message_done, notify_rejection
from host.core.loops import run  # noqa: F401  (part of this module's interface: host.core.batch.run)
from host.core.batch_report import log_batch, write_emf
from host.core.records import peek_type, receive_count_of, record_attributes, record_group, record_message_id

if TYPE_CHECKING:
    from host.core.context import MessageContext
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.batch")

#: ``on_outcome(index, record, outcome)``: told of each record's outcome as soon as it is known.
OutcomeCallback = Callable[[int, Any, Outcome], None]

@dataclass
class BatchResult:
    """Outcomes of one batch, in record order."""

    outcomes: list[Outcome]

    def response(self) -> dict[str, list[dict[str, str]]]:
        """The ReportBatchItemFailures response: every record that did not succeed.

        A record without a ``messageId`` cannot be named: Lambda would fail the
        whole batch on an identifier that is not one of its message ids, so it is
        left out (it was logged as an error; SQS never sends such a record).
        """
        return {
            "batchItemFailures": [
                {"itemIdentifier": outcome.message_id}
                for outcome in self.outcomes
                if not outcome.ok and outcome.message_id
            ]
        }


# -- processing ----------------------------------------------------------------


async def _process_record(worker: Worker, record: Any, index: int, lambda_context: Any) -> Outcome:
    """Dispatch one record; a record that is not a well-formed SQS record is rejected alone."""
    if not isinstance(record, dict):
        kind = "null" if record is None else type(record).__name__
        return Outcome(Status.REJECTED, "", reason=f"SQS record #{index} is not an object (got {kind}); it cannot be handled")
    message_id = record_message_id(record)
    if not message_id:
        return Outcome(
            Status.REJECTED, "", peek_type(record),
            reason=f"SQS record #{index} has no messageId, so its failure could not be reported for retry; not handled",
        )
    attributes = record_attributes(record)
    receive_count = receive_count_of(attributes)
    body = record.get("body")
    if not isinstance(body, str):
        kind = "absent" if body is None else f"a {type(body).__name__}"
        outcome = Outcome(Status.REJECTED, message_id, reason=f"SQS record has no string \"body\" (it is {kind})")
        await notify_rejection(worker, outcome, receive_count)
        return outcome
    if is_pointer(body):
        resolved = await _resolve_large_message(worker, message_id, body, receive_count)
        if not isinstance(resolved, str):
            return resolved
        body = resolved
    return await dispatch(
        worker, body, message_id=message_id, receive_count=receive_count,
        attributes=attributes, lambda_context=lambda_context,
    )


async def _resolve_large_message(worker: Worker, message_id: str, body: str, receive_count: int) -> str | Outcome:
    """The body an SQS Extended Client pointer stands for, read from S3; or the record's outcome when it cannot be read."""
    from host.aws.large_messages import resolve

    resolved = await resolve(worker, message_id, body)
    if not isinstance(resolved, str) and resolved.status is Status.REJECTED:
        await notify_rejection(worker, resolved, receive_count)
    return resolved


def _cancelled() -> bool:
    """True when the running task is being cancelled (a CancelledError a handler raised itself is not that)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def handler_timeout_seconds(settings: Any, message_lifetime: float | None = None) -> float | None:
    """How long one message's handler may run (``LETSGO_WORKER_HANDLER_TIMEOUT``); None: no limit.

    Unset, it is 90% of how long a received message stays invisible: the
    visibility timeout, or ``message_lifetime`` where the source keeps running
    messages invisible longer (the heartbeat of ``serve``, up to
    ``LETSGO_WORKER_MAX_VISIBILITY_EXTENSION``). The message then fails, and is
    retried, before it would be visible again anyway, so its batch settles in
    time and its healthy batch-mates are not delivered again.
    """
    timeout = settings.handler_timeout
    if timeout is None:
        timeout = (message_lifetime or settings.visibility_timeout) * 0.9
    return timeout if timeout > 0 else None


@dataclass(slots=True)
class _Chain:
    """Records that run one after the other (a FIFO group's, or a single record), in one task."""

    group: str | None
    indexes: list[int]
    #: The index of the record running now, if any.
    running: int | None = None
    task: asyncio.Task[None] = field(init=False)


class _Batch:
    """The state of one batch while it runs: outcomes by record index and when each record started."""

    def __init__(
        self, worker: Worker, records: list[Any], lambda_context: Any, deadline: Deadline,
        on_outcome: OutcomeCallback | None = None, message_lifetime: float | None = None,
    ) -> None:
        self.worker = worker
        self.records = records
        self.lambda_context = lambda_context
        self.deadline = deadline
        self.on_outcome = on_outcome
        self.outcomes: list[Outcome | None] = [None] * len(records)
        self.handler_timeout = handler_timeout_seconds(worker.settings, message_lifetime)
        self.started: dict[int, float] = {}
        # Looked up once per batch: with no implementation, a message pays one test of an empty list.
        self.done_hooks = worker.pm.hook.letsgo_message_done.get_hookimpls()

    def chains(self) -> list[_Chain]:
        """Record indexes to run one after the other: one chain per FIFO group, one per other record."""
        chains: list[_Chain] = []
        groups: dict[str, _Chain] = {}
        for index, record in enumerate(self.records):
            group = record_group(record)
            if group is None:
                chains.append(_Chain(None, [index]))
            elif group in groups:
                groups[group].indexes.append(index)
            else:
                chains.append(groups.setdefault(group, _Chain(group, [index])))
        return chains

    async def run_chain(self, chain: _Chain) -> None:
        """Run the records of one chain one after the other, until one fails in a FIFO group or the deadline passes.

        Whatever a record's handler raises fails that record alone. The handler
        timeout is kept by :meth:`wait`, which cancels a chain whose record runs past it.
        """
        for index in chain.indexes:
            if self.deadline.passed():
                return  # the rest are reported "not started" after the wait
            chain.running = index
            started = self.started[index] = time.perf_counter()
            try:
                outcome = await _process_record(self.worker, self.records[index], index, self.lambda_context)
            except BaseException as error:
                if _cancelled():
                    raise  # the deadline or the handler timeout stopped it: not the handler's own exception
                # Whatever a handler raises fails its own message only: sys.exit(), KeyboardInterrupt,
                # GeneratorExit or any BaseException subclass must neither stop its batch-mates nor
                # reach the event loop, which re-raises KeyboardInterrupt and SystemExit out of the
                # batch and would end the thread running it. Caught here, at the task's own await,
                # because the loop throws a sync handler's GeneratorExit in at this point.
                # Real signals never arrive here: serve handles SIGINT and SIGTERM itself, and
                # host.core.loops.run() turns SIGINT into a cancellation.
                outcome = self._unrun(index, f"{type(error).__name__}: {error}", started)
                outcome.error = error
            chain.running = None
            if self.outcomes[index] is not None:
                return  # timed out meanwhile (a handler that swallowed its cancellation): already reported
            self._known(index, outcome)
            if chain.group is not None and not outcome.ok:
                self._skip_rest(chain, index, outcome)
                return

    def _skip_rest(self, chain: _Chain, index: int, outcome: Outcome) -> None:
        """Report the records after ``index`` in a FIFO group failed without running: they are retried after it, in order."""
        for later in chain.indexes[chain.indexes.index(index) + 1 :]:
            self._known(later, self._unrun(
                later, f"not run: message {outcome.message_id or '#' + str(index)} before it in FIFO group "
                f"{chain.group!r} did not succeed; it is retried after that one, in order",
            ))

    async def wait(self, chains: list[_Chain]) -> None:
        """Wait for the chains still running, failing each record that runs past the handler timeout.

        One wait for the whole batch, until the soonest of the running records'
        handler timeouts or the deadline: a record whose handler does not wait
        costs no timer. A record past its timeout is reported at once and its
        chain cancelled (a sync handler's thread is set aside); at the deadline
        every chain still running is cancelled. Cancelled async handlers get a
        short grace to unwind.
        """
        running = [chain for chain in chains if not chain.task.done()]
        stopped: list[asyncio.Task[None]] = []
        while running:
            budget = self.deadline.budget_seconds()
            if budget == 0:
                self.deadline.reached = True
                stopped.extend(chain.task for chain in running)
                for chain in running:
                    chain.task.cancel()
                break
            expiries = [expiry for chain in running if (expiry := self._expiry(chain)) is not None]
            wake = max(0.0, min(expiries) - time.perf_counter()) if expiries else None
            if budget is not None:
                wake = budget if wake is None else min(wake, budget)
            await asyncio.wait([chain.task for chain in running], timeout=wake)
            now = time.perf_counter()
            for chain in running:
                expiry = self._expiry(chain)
                if not chain.task.done() and expiry is not None and now >= expiry:
                    self._time_out(chain)
                    stopped.append(chain.task)
            running = [chain for chain in running if not chain.task.done() and chain.task not in stopped]
        if stopped:
            await cancel_grace(stopped, self.deadline)

    def _expiry(self, chain: _Chain) -> float | None:
        """When the chain's running record reaches the handler timeout (``time.perf_counter()``); None: it cannot."""
        if self.handler_timeout is None or chain.running is None:
            return None
        return self.started[chain.running] + self.handler_timeout

    def _time_out(self, chain: _Chain) -> None:
        """Fail the chain's running record as timed out, cancel the chain, and skip the rest of a FIFO group."""
        index = chain.running
        assert index is not None
        chain.task.cancel()
        outcome = self._timed_out(index, self.started[index])
        self._known(index, outcome)
        if chain.group is not None:
            self._skip_rest(chain, index, outcome)

    def _known(self, index: int, outcome: Outcome) -> None:
        """Record ``outcome`` for record ``index``, tell ``on_outcome`` and ``letsgo_message_done`` at once."""
        self.outcomes[index] = outcome
        if self.on_outcome is not None:
            try:
                self.on_outcome(index, self.records[index], outcome)
            except Exception:  # the callback's failure is its own: the outcome and the batch stand
                logger.exception("the outcome callback failed for message %s", outcome.message_id or f"#{index}")
        if self.done_hooks:
            message_done(self.worker, self.done_hooks, outcome, lambda: self._context(index, outcome))

    def _context(self, index: int, outcome: Outcome) -> MessageContext:
        """The ``ctx`` ``letsgo_message_done`` gets for record ``index``: what the record and its outcome tell."""
        record = self.records[index]
        attributes = record_attributes(record) if isinstance(record, dict) else {}
        return message_context(
            self.worker, message_id=outcome.message_id, receive_count=receive_count_of(attributes), type=outcome.type,
            plugin=outcome.plugin, attributes=attributes, lambda_context=self.lambda_context,
        )

    def _timed_out(self, index: int, started: float) -> Outcome:
        """The outcome of a record past the handler timeout; a sync handler's thread is set aside."""
        timeout = self.handler_timeout
        outcome = self._unrun(
            index, f"timed out after {timeout:g} s (LETSGO_WORKER_HANDLER_TIMEOUT); it is retried", started,
        )
        if outcome.message_id:
            self.worker.set_aside_handler(outcome.message_id, timeout)
        return outcome

    def _unrun(self, index: int, reason: str, started: float | None = None) -> Outcome:
        record = self.records[index]
        type_ = peek_type(record)
        entry = self.worker.registry.get(type_) if type_ else None
        duration = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        return Outcome(Status.FAILED, record_message_id(record), type_, entry.plugin if entry else None, reason, duration_ms=duration)

    def finish(self) -> list[Outcome]:
        """Fill in the records the deadline stopped, and return every outcome in record order."""
        margin = self.deadline.margin_ms
        for index, outcome in enumerate(self.outcomes):
            if outcome is not None:
                continue
            if index in self.started:
                reason = (
                    f"did not finish {margin:g} ms before the Lambda timeout (LETSGO_WORKER_DEADLINE_MARGIN_MS); "
                    "reported failed so SQS redelivers it (a sync handler's thread may still be running)"
                )
                self._known(index, self._unrun(index, reason, self.started[index]))
            else:
                reason = f"not started: less than {margin:g} ms were left before the Lambda timeout; SQS redelivers it"
                self._known(index, self._unrun(index, reason))
        return list(self.outcomes)  # type: ignore[arg-type]  # every slot is filled above


async def process_records(
    worker: Worker, records: list[Any], lambda_context: Any = None, *, margin_ms: float | None = None,
    on_outcome: OutcomeCallback | None = None, max_receive_count: int | None = None,
    message_lifetime: float | None = None,
) -> list[Outcome]:
    """Dispatch every record (FIFO groups in order, the rest concurrently); outcomes in record order.

    ``margin_ms`` defaults to the worker's ``LETSGO_WORKER_DEADLINE_MARGIN_MS``;
    it only matters when ``lambda_context`` can tell the remaining time.
    ``on_outcome(index, record, outcome)`` is called once per record, on the
    event loop, as soon as that record's outcome is known (a FIFO group's records
    that cannot run are known when the one before them fails; those the deadline
    stopped, at the end). An exception it raises is logged and changes nothing.
    ``max_receive_count`` is the source's: a record that failed on that receive
    notifies (:mod:`host.core.final_failure`). ``message_lifetime`` is how long
    the source keeps a running message invisible, when longer than the
    visibility timeout (see :func:`handler_timeout_seconds`).
    """
    began = time.perf_counter()
    margin = worker.settings.deadline_margin_ms if margin_ms is None else margin_ms
    batch = _Batch(worker, records, lambda_context, Deadline(lambda_context, margin), on_outcome, message_lifetime)
    chains = batch.chains()
    fifo_groups = sum(1 for chain in chains if chain.group is not None)
    # One task per chain: each record (or FIFO group) runs in a context of its own, so context
    # variables do not leak between records, and the deadline can cancel it alone.
    for chain in chains:
        chain.task = asyncio.create_task(batch.run_chain(chain))
    # Most handlers have nothing to wait for and are done after one turn of the loop: only a batch
    # with work still running pays for the wait (its timer, callbacks and loop turns).
    await asyncio.sleep(0)
    if not all(chain.task.done() for chain in chains):
        await batch.wait(chains)
    outcomes = batch.finish()
    log_batch(batch.records, outcomes, batch.lambda_context, fifo_groups, batch.deadline.reached, began)
    if max_receive_count:
        from host.core.final_failure import notify_final_failures

        await notify_final_failures(worker, records, outcomes, max_receive_count)
    if "emf" in batch.worker.settings.metrics:
        write_emf(outcomes, worker.settings, lambda_context)
    return outcomes


def process_sqs_event(
    worker: Worker, event: dict[str, Any], lambda_context: Any = None, *, on_outcome: OutcomeCallback | None = None,
    max_receive_count: int | None = None, message_lifetime: float | None = None,
) -> BatchResult:
    """Process an SQS event (``{"Records": [...]}``) and return its :class:`BatchResult`.

    Never raises for a bad record or a failing handler: every record gets an
    outcome, in record order. The keyword arguments are as for :func:`process_records`.
    """
    records = event.get("Records")
    if not isinstance(records, list):
        raise TypeError(f"an SQS event has a \"Records\" list, got {type(records).__name__}")
    return BatchResult(run(process_records(
        worker, records, lambda_context, on_outcome=on_outcome, max_receive_count=max_receive_count,
        message_lifetime=message_lifetime,
    )))
