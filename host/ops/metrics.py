"""Prometheus metrics of the local runtime: ``GET /metrics`` in the text format, with prometheus-client.

What is exposed:

- ``letsgo_messages_total{type,outcome}``: messages handled, by type and outcome
  (``succeeded``, ``failed``, ``rejected``), counted through the host's own
  ``letsgo_message_done`` implementation (:class:`PrometheusRecorder`);
- ``letsgo_handler_duration_seconds{type}``: a histogram of how long handlers ran;
- ``letsgo_queue_messages{state}`` (``visible``, ``in_flight``, ``delayed``,
  ``dead_letter``) and ``letsgo_queue_oldest_age_seconds``, read from the queue's
  :class:`~host.ops.inspector.Inspector` at each scrape (:class:`QueueCollector`),
  with ``letsgo_queue_up`` saying whether the queue could be read.

A type that no installed plugin registered is counted as ``(unknown)``: a client
sending made-up types cannot grow the number of series without bound.

With ``serve --workers N`` messages are handled in other processes. Each then
writes its counts to a file of prometheus-client's multiprocess mode, in a
folder beside the queue (``<queue file>.metrics``) that
:func:`prepare_serve_metrics` empties and names before the processes start; a
scrape adds up every file, so counts survive a delivery process that is replaced.

This module imports prometheus-client, so it is never imported in Lambda, where
metrics are CloudWatch EMF lines (:mod:`host.aws.emf`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from host import hookimpl
from host.core.dispatch import Status
from host.ops.inspector import STATES

if TYPE_CHECKING:
    from host.config import Settings
    from host.core.dispatch import Outcome
    from host.core.worker import Worker
    from host.ops.inspector import Inspector

logger = logging.getLogger("letsgo.metrics")

#: Handler durations in seconds: from a quick API call to the visibility timeout's range.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: Every outcome a message can have (succeeded, failed, rejected), each counted from zero for every registered type.
OUTCOMES = tuple(status.value for status in Status)

#: The environment variable through which prometheus-client finds its multiprocess folder.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: The multiprocess folder of this server, set by :func:`prepare_serve_metrics`; None: counts are in memory.
_multiprocess_folder: str | None = None


@dataclasses.dataclass(frozen=True)
class _Metrics:
    messages: Counter
    durations: Histogram


_metrics_made: _Metrics | None = None
_metrics_lock = threading.Lock()


def message_metrics() -> _Metrics:
    """This process's message counter and duration histogram, made on first use.

    They belong to no registry: each scrape puts them in a registry of its own,
    beside the queue's collector. Made once per process, so several workers in
    one process (tests) count into the same series.
    """
    global _metrics_made
    if _metrics_made is None:
        with _metrics_lock:
            if _metrics_made is None:
                _metrics_made = _Metrics(
                    Counter(
                        "letsgo_messages", "Messages handled, by type and outcome (succeeded, failed, rejected).",
                        ["type", "outcome"], registry=None,
                    ),
                    Histogram(
                        "letsgo_handler_duration_seconds", "How long message handlers ran, by type.",
                        ["type"], buckets=DURATION_BUCKETS, registry=None,
                    ),
                )
    return _metrics_made


# -------------------------------------------------------------------------
# Counting: the host's letsgo_message_done
# -------------------------------------------------------------------------


class PrometheusRecorder:
    """Counts each message's outcome and its handler's duration: the host's ``letsgo_message_done``."""

    def __init__(self) -> None:
        self.metrics = message_metrics()
        # Each series looked up once: ``labels()`` checks and locks on every call, which would
        # cost more than the count itself. Bounded: registered types (and "(unknown)") by outcome.
        self._counts: dict[tuple[str, Status], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    @hookimpl
    def letsgo_message_done(self, outcome: Outcome) -> None:
        """Count ``outcome`` under its type and outcome; observe its handler's duration when one ran."""
        type_ = outcome.metric_type
        key = (type_, outcome.status)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = self.metrics.messages.labels(type_, outcome.status.value)
        count.inc()
        seconds = outcome.handler_seconds
        if seconds is not None:
            durations = self._durations.get(type_)
            if durations is None:
                durations = self._durations[type_] = self.metrics.durations.labels(type_)
            durations.observe(seconds)


def install(worker: Worker) -> PrometheusRecorder:
    """Count ``worker``'s messages for ``GET /metrics``; every registered type starts at zero.

    Series that exist from the start make ``rate()`` and ``increase()`` right on
    the first failure, rather than missing it because the series was new.
    """
    recorder = PrometheusRecorder()
    for entry in worker.registry:
        for outcome in OUTCOMES:
            recorder.metrics.messages.labels(entry.type, outcome)
        recorder.metrics.durations.labels(entry.type)
    worker.pm.register(recorder, name="letsgo_builtins.metrics")
    return recorder


def prepare_serve_metrics(settings: Settings) -> Settings:
    """Turn counting on for ``serve``; return the settings its worker and delivery processes start with.

    Call it before the worker starts and before any delivery process is
    spawned. With ``--workers N`` it empties the multiprocess folder beside the
    queue (counts of an earlier run would be added in otherwise) and names it in
    the environment the delivery processes inherit, before they import
    prometheus-client.
    """
    global _multiprocess_folder
    from host.config import set_process_environment

    if settings.delivery_processes:
        folder = multiprocess_folder(settings.db_path)
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            from host.errors import StartupError

            raise StartupError(
                f"cannot create {folder}, where serve --workers keeps the delivery processes' metrics: "
                f"{error.strerror or error}; it must be a folder this user can write, beside the queue (or pass another --db)"
            ) from None
        set_process_environment(MULTIPROCESS_VARIABLE, folder)
        _multiprocess_folder = folder
    else:
        _multiprocess_folder = None
    return dataclasses.replace(settings, metrics=settings.metrics | {"prometheus"})


def multiprocess_folder(db_path: str) -> str:
    """The folder of prometheus-client's multiprocess files for the queue at ``db_path``: beside it."""
    return os.path.abspath(db_path) + ".metrics"


# -------------------------------------------------------------------------
# Scraping: GET /metrics
# -------------------------------------------------------------------------


class QueueCollector:
    """The queue's gauges, read from its inspector at scrape time (never stale, nothing to update)."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def describe(self) -> list[Metric]:
        """Nothing: registering this collector must not read the queue."""
        return []

    def collect(self) -> Iterator[Metric]:
        """``letsgo_queue_messages{state}``, ``letsgo_queue_oldest_age_seconds`` and ``letsgo_queue_up``."""
        up = GaugeMetricFamily("letsgo_queue_up", "1 when the queue's counts could be read at this scrape, else 0.")
        try:
            stats = self.inspector.stats()
        except Exception as error:  # a scrape must answer, even when the queue (SQS) cannot be reached
            logger.warning("metrics: could not read the queue %s: %s: %s",
                           getattr(self.inspector, "name", "?"), type(error).__name__, error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        note = " (approximate: SQS's ApproximateNumberOfMessages attributes)" if stats.approximate else ""
        counts = GaugeMetricFamily(
            "letsgo_queue_messages", f"Messages in the queue, by state{note}.", labels=["state"],
        )
        for state in STATES:
            counts.add_metric([state], getattr(stats, state))
        yield counts
        yield GaugeMetricFamily(
            "letsgo_queue_oldest_age_seconds",
            "Age of the oldest waiting (visible or delayed) message; 0 when none waits.",
            value=stats.oldest_age_seconds or 0.0,
        )


def scrape_registry(inspector: Inspector | None) -> CollectorRegistry:
    """A registry holding what one scrape shows: the message metrics, and the queue's when there is one.

    Under ``serve --workers N`` the message metrics are the sum of every
    delivery process's files; otherwise they are this process's own.
    """
    registry = CollectorRegistry(auto_describe=False)
    if _multiprocess_folder is not None:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=_multiprocess_folder)
    else:
        metrics = message_metrics()
        registry.register(metrics.messages)
        registry.register(metrics.durations)
    if inspector is not None:
        registry.register(QueueCollector(inspector))
    return registry


def metrics_response(inspector: Inspector | None, accept: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """``GET /metrics``: status, headers and body, in the Prometheus text format.

    ``accept`` is the request's ``Accept`` header: OpenMetrics when it asks for
    ``application/openmetrics-text``. This blocks while the inspector reads the
    queue (a network call for SQS): call it off the event loop.
    """
    encode, content_type = choose_encoder(accept or "")
    body = encode(scrape_registry(inspector))
    return 200, [("Content-Type", content_type), ("Cache-Control", "no-store")], body

