"""Delivery: the event source mapping. Batches from a message source, through the batch processor.

Any :class:`MessageSource` (the local SQLite queue, a real SQS queue) is driven
the way Lambda's SQS event source mapping drives a function: batches of up to
``batch_size`` records gathered within a batching window, up to ``concurrency``
batches in flight, each handed to :func:`host.core.batch.process_sqs_event` (the same
code ``lambda_entry.handler`` runs), then settled record by record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from host.core.final_failure import watch_claim_dead_letters
from host.errors import SourceUnavailable

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.dispatch import Outcome
    from host.core.worker import Worker


@runtime_checkable
class MessageSource(Protocol):
    """Where delivered messages come from, and where their outcomes go back to.

    ``receive`` returns SQS-shaped records: ``messageId``, ``receiptHandle``,
    ``body`` (a string), ``attributes`` (``ApproximateReceiveCount``,
    ``SentTimestamp``, ``ApproximateFirstReceiveTimestamp``, ``MessageGroupId``
    for FIFO queues...), ``md5OfBody``, ``eventSource`` and ``eventSourceARN``.
    Each returned record is invisible to other receivers until it is settled or
    its visibility timeout passes.

    ``settle`` is given records of one received batch with one outcome each,
    in record order, as soon as their outcomes are known (each record once,
    often one at a time): a succeeded record is deleted; a failed one becomes visible
    again after a back-off driven by its receive count, and is dead-lettered
    after the maximum receive count; a rejected one is dead-lettered at once (a
    real SQS queue sends it to its dead-letter queue when it knows one, else
    backs it off and leaves it to its redrive policy).
    """

    def receive(self, max_messages: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Claim up to ``max_messages`` visible records, waiting up to ``wait_seconds`` for the first."""
        ...

    def settle(self, records: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Apply each record's outcome: delete, retry later, or dead-letter."""
        ...


logger = logging.getLogger("letsgo.delivery")

#: After a failed receive the loop waits this long, doubling per failure up to the maximum.
RECEIVE_BACKOFF_BASE_SECONDS = 1.0
RECEIVE_BACKOFF_MAX_SECONDS = 16.0

#: How long one receive waits for a first message before the loop looks around again.
DEFAULT_POLL_SECONDS = 1.0

#: While other batches are running, a batch that is not full waits up to this
#: long for more messages (when no batching window is configured). An idle
#: worker delivers a lone message at once; a busy one gathers fuller batches,
#: so that receiving, settling and running a batch are shared by more messages.
LOAD_WINDOW_SECONDS = 0.02

#: How often a batch that is waiting to fill up looks for more messages.
_FILL_STEP_SECONDS = 0.005

#: A message's outcome is settled at most this long after it is known, together with the
#: outcomes of batch-mates known meanwhile: one settle for a batch that ends quickly, and
#: none held back by a slow batch-mate.
SETTLE_GATHER_SECONDS = 0.2


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    deadline: float  # monotonic; past it the batch no longer holds a concurrency slot
    overdue: bool = False


class _Runner:
    """A long-lived thread that runs batches one after another, keeping its event loop between them."""

    def __init__(self, delivery: Delivery, name: str) -> None:
        self._delivery = delivery
        self._work: queue.SimpleQueue[tuple[int, _Batch] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def give(self, number: int, batch: _Batch) -> None:
        """Run ``batch`` next."""
        self._work.put((number, batch))

    def retire(self) -> None:
        """End the thread once it is idle."""
        self._work.put(None)

    def _run(self) -> None:
        while True:
            work = self._work.get()
            if work is None or not self._delivery._run_batch(self, *work):
                return


class Delivery:
    """The event source mapping: drives a :class:`MessageSource` through the batch processor.

    One dispatcher thread receives batches of up to ``batch_size`` records,
    waiting up to ``batch_window`` seconds to fill a batch once its first record
    has arrived (without a window, only while other batches are running, for up
    to :data:`LOAD_WINDOW_SECONDS`), and hands each batch to a delivery thread,
    at most ``concurrency`` at once. Delivery threads live on from batch to
    batch, each with its own event loop. A batch still running after
    ``visibility_timeout`` gives its slot back (its messages are visible again by
    then and will be delivered again), and another thread takes the next batch,
    so one hung handler cannot stall delivery.
    """

    def __init__(
        self,
        worker: Worker,
        source: MessageSource,
        *,
        batch_size: int = 10,
        batch_window: float = 0.0,
        concurrency: int = 5,
        visibility_timeout: float = 360.0,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        max_visibility_extension: float = 0.0,
    ) -> None:
        from host.local.heartbeat import Heartbeat

        self.worker = worker
        self.source = source
        self.batch_size = batch_size
        self.batch_window = batch_window
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.poll_seconds = poll_seconds
        self._batches: dict[int, _Batch] = {}
        self._idle: list[_Runner] = []
        self._runners = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._next_batch = 0
        #: Keeps running messages invisible (None: off, or the source cannot extend).
        self.heartbeat = Heartbeat.for_source(source, visibility_timeout, max_visibility_extension)
        #: How long a batch may hold its slot: its messages are visible again after that.
        self.batch_lifetime = self.heartbeat.max_extension if self.heartbeat else visibility_timeout
        watch_claim_dead_letters(worker, source)  # a message the local queue dead-letters when claimed notifies

    @classmethod
    def from_settings(cls, worker: Worker, source: MessageSource, settings: Settings, **options: Any) -> Delivery:
        """A delivery loop with the batch size, window, concurrency, visibility timeout and heartbeat of ``settings``."""
        return cls(
            worker, source, batch_size=settings.batch_size, batch_window=settings.batch_window,
            concurrency=settings.concurrency, visibility_timeout=settings.visibility_timeout,
            max_visibility_extension=settings.max_visibility_extension, **options,
        )

    # -- life cycle --------------------------------------------------------------

    def start(self) -> Delivery:
        """Start the dispatcher thread (and the heartbeat)."""
        if self.heartbeat is not None:
            self.heartbeat.start()
        self._dispatcher = threading.Thread(target=self._dispatch, name="letsgo-delivery", daemon=True)
        self._dispatcher.start()
        return self

    def stop(self, timeout: float = 10.0) -> int:
        """Stop receiving, wait up to ``timeout`` seconds for running batches; return how many were left running.

        The records of batches left running are released to the source when it
        can (``release``), so they are delivered again at the next start.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        if self._dispatcher is not None:
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._changed.notify_all()
            # Overdue batches are not waited for: their messages are already visible again.
            while self._running() and (remaining := deadline - time.monotonic()) > 0:
                self._changed.wait(min(remaining, 0.25))
            left = list(self._batches.values())
            idle, self._idle = self._idle, []
        for runner in idle:
            runner.retire()
        running = sum(1 for batch in left if not batch.overdue)
        if self.heartbeat is not None:
            self.heartbeat.stop()  # before the release: a released message must not be extended again
        if running:
            logger.warning(
                "stopping with %d batch(es) still running after %gs; their messages will be delivered again",
                running, timeout,
            )
        if self._dispatcher is not None and self._dispatcher.is_alive():
            # A receive still waiting (an SQS long poll) releases what it gets once it returns. Released
            # before it returns, what is left here could be received by it once more, for nothing.
            self._dispatcher.join(self.poll_seconds + 5)
        self._release([record for batch in left for record in batch.records])
        return running

    def in_flight(self) -> int:
        """Batches running and still within their visibility timeout (or the heartbeat's cap)."""
        with self._changed:
            return self._running()

    def alive(self) -> bool:
        """Whether the dispatcher and the heartbeat threads run (or are stopping on request)."""
        if self._stopping.is_set():
            return True
        dispatching = self._dispatcher is not None and self._dispatcher.is_alive()
        return dispatching and (self.heartbeat is None or self.heartbeat.alive())

    # -- the dispatcher --------------------------------------------------------------

    def _running(self) -> int:
        now = time.monotonic()
        for batch in self._batches.values():
            if not batch.overdue and now >= batch.deadline:
                batch.overdue = True
                logger.warning(
                    "a batch of %d message(s) has run longer than %gs (%s);"
                    " its messages are delivered again (a handler may hang)", len(batch.records), self.batch_lifetime,
                    "LETSGO_WORKER_MAX_VISIBILITY_EXTENSION" if self.heartbeat else "the visibility timeout",
                )
        return sum(1 for batch in self._batches.values() if not batch.overdue)

    def _free_slots(self) -> int:
        """Wait until a batch may start; return how many may (0 once stopping)."""
        with self._changed:
            while not self._stopping.is_set():
                running = self._running()
                if running < self.concurrency:
                    return self.concurrency - running
                soonest = min((b.deadline for b in self._batches.values() if not b.overdue), default=None)
                pause = self.poll_seconds if soonest is None else max(0.01, soonest - time.monotonic())
                self._changed.wait(min(pause, self.poll_seconds))
        return 0

    def _dispatch(self) -> None:
        failures, outage_began, reported = 0, 0.0, False
        while slots := self._free_slots():
            try:
                records = self._gather(slots)
            except Exception as error:
                # One line per outage, not one per attempt; the wait doubles up to its maximum.
                failures += 1
                if failures == 1:
                    # A source that raises SourceUnavailable has said so itself, and says when it is back.
                    outage_began, reported = time.monotonic(), not isinstance(error, SourceUnavailable)
                    if reported:
                        logger.warning("receiving messages failed: %s: %s; retrying with back-off", type(error).__name__,
                                       error, exc_info=logger.isEnabledFor(logging.DEBUG))
                self._stopping.wait(min(RECEIVE_BACKOFF_MAX_SECONDS, RECEIVE_BACKOFF_BASE_SECONDS * 2 ** min(failures - 1, 10)))
                continue
            if failures and reported:
                logger.warning("receiving messages again, after %d failed attempt(s) over %.1fs",
                               failures, time.monotonic() - outage_began)
            failures = 0
            if not records:
                continue
            if self._stopping.is_set():
                self._release(records)
                return
            if self._is_suspect(records[0]):
                self._run_alone(records)
                continue
            from host.local.fifo import split_batches

            for batch in split_batches(records, self.batch_size):
                self._launch(batch)

    def _is_suspect(self, record: dict[str, Any]) -> bool:
        is_suspect = getattr(self.source, "is_suspect", None)
        return is_suspect is not None and is_suspect(record)

    def _run_alone(self, records: list[dict[str, Any]]) -> None:
        """Run a suspect (a message in flight when its process crashed) with nothing else in flight."""
        logger.warning(
            "message %s was being handled when a worker process crashed; it runs alone this time",
            records[0].get("messageId"),
        )
        self._wait_until_idle()
        self._launch(records)
        self._wait_until_idle()

    def _wait_until_idle(self) -> None:
        """Wait until no batch is running (or the loop is stopping)."""
        with self._changed:
            while self._running() and not self._stopping.is_set():
                self._changed.wait(self.poll_seconds)

    def _gather(self, slots: int) -> list[dict[str, Any]]:
        """Records for up to ``slots`` batches, in one receive when that many are waiting.

        The first receive waits for a record. A single batch that is not full
        then waits for more: for the batching window, or, without one, while
        other batches are running (for at most :data:`LOAD_WINDOW_SECONDS`).
        """
        records = self.source.receive(self.batch_size * slots, self.poll_seconds)
        if not records or len(records) >= self.batch_size or self._is_suspect(records[0]):
            return records
        window, under_load = self.batch_window, False
        if window <= 0:
            window, under_load = LOAD_WINDOW_SECONDS, True
        window_ends = time.monotonic() + window
        step = max(_FILL_STEP_SECONDS, window / 8)
        while len(records) < self.batch_size and not self._stopping.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            if under_load:
                with self._changed:
                    if not self._running():
                        break  # nothing else is running: deliver what is here now
                    self._changed.wait(min(remaining, step))
                more = self.source.receive(self.batch_size - len(records), 0)
            else:
                more = self.source.receive(self.batch_size - len(records), min(remaining, self.poll_seconds))
                if more and len(records) + len(more) < self.batch_size:
                    # A receive returns with the first arrivals; pause before looking again, so that
                    # a steady trickle is gathered in a few receives rather than one per message.
                    self._stopping.wait(min(step, max(0.0, window_ends - time.monotonic())))
            records += more
        return records

    def _launch(self, records: list[dict[str, Any]]) -> None:
        with self._changed:
            number = self._next_batch
            self._next_batch += 1
            batch = _Batch(records, time.monotonic() + self.batch_lifetime)
            self._batches[number] = batch
            if self.heartbeat is not None:
                self.heartbeat.watch(records)
            runner = self._idle.pop() if self._idle else None
            if runner is None:
                self._runners += 1
                runner = _Runner(self, f"letsgo-batch-{self._runners}")
                runner.thread.start()
        runner.give(number, batch)

    def _run_batch(self, runner: _Runner, number: int, batch: _Batch) -> bool:
        """Run one batch on ``runner``'s thread, settling each message soon after its outcome is known.

        A message that succeeds is deleted within :data:`SETTLE_GATHER_SECONDS`,
        not when its slowest batch-mate is done: a hung handler would otherwise
        hold the healthy ones until the visibility timeout, and they would run
        again. Outcomes known within that time of each other are settled in one
        call, so a batch that ends quickly is settled once, at its end. Nothing
        is settled twice. Return whether the thread should wait for another batch.
        """
        import asyncio

        from host.core.batch import process_sqs_event
        from host.core.dispatch import Outcome, Status

        records = batch.records
        settled = [False] * len(records)
        known: list[tuple[int, Outcome]] = []  # outcomes not yet settled
        timer: asyncio.TimerHandle | None = None

        def settle(entries: list[tuple[int, Outcome]]) -> None:
            self.source.settle([records[i] for i, _ in entries], [outcome for _, outcome in entries])
            for index, _ in entries:
                settled[index] = True
            done = {id(records[i]) for i, _ in entries}
            if self.heartbeat is not None:
                self.heartbeat.forget([records[i] for i, _ in entries])
            with self._changed:  # a stop releases only what is still unsettled
                batch.records = [r for r in batch.records if id(r) not in done]

        def settle_known() -> None:
            nonlocal timer
            timer, entries = None, known[:]
            known.clear()
            try:
                settle(entries)
            except Exception:
                logger.exception("settling %d message(s) failed; trying again when their batch ends", len(entries))

        def on_outcome(index: int, record: Any, outcome: Outcome) -> None:
            nonlocal timer
            known.append((index, outcome))
            if timer is None:
                timer = asyncio.get_running_loop().call_later(SETTLE_GATHER_SECONDS, settle_known)

        try:
            try:
                outcomes = process_sqs_event(
                    self.worker, {"Records": records}, on_outcome=on_outcome,
                    max_receive_count=getattr(self.source, "max_receive_count", None),  # its last receive notifies
                    message_lifetime=self.batch_lifetime,  # with the heartbeat, a handler may run past the timeout
                ).outcomes
            except BaseException as error:  # the thread must settle its batch and live on, whatever was raised
                logger.exception("the batch processor failed; every message of the batch not yet settled is retried")
                reason = f"batch processing failed: {type(error).__name__}: {error}"
                outcomes = [Outcome(Status.FAILED, str(r.get("messageId")), reason=reason) for r in records]
                for index, outcome in known:  # outcomes known before the failure stand
                    outcomes[index] = outcome
            if timer is not None:
                timer.cancel()  # the batch is over: what is known is settled now, in one call
            left = [(index, outcomes[index]) for index, done in enumerate(settled) if not done]
            if left:
                settle(left)
        except Exception:
            logger.exception("settling a batch failed; its messages are delivered again after the visibility timeout")
        finally:
            if self.heartbeat is not None:
                self.heartbeat.forget(records)
            with self._changed:
                del self._batches[number]
                # Enough idle threads for a full set of batches; one replacing a hung thread retires.
                keep = not self._stopping.is_set() and len(self._idle) < self.concurrency
                if keep:
                    self._idle.append(runner)
                self._changed.notify_all()
        return keep

    def _release(self, records: list[dict[str, Any]]) -> None:
        release = getattr(self.source, "release", None)
        if release is None or not records:
            return
        try:
            release(records)
        except Exception:
            logger.exception("could not release %d message(s); they are delivered again after the visibility timeout", len(records))

