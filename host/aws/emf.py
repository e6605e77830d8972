"""CloudWatch Embedded Metric Format: a batch's metrics as JSON lines on standard output.

With ``LETSGO_WORKER_METRICS=emf``, each batch writes, after it ran, one line
per message type and outcome. In Lambda, CloudWatch Logs turns each line into
metrics, so alarms and dashboards need no agent and no API call:

- ``Messages`` (Count): how many messages of that type had that outcome;
- ``HandlerDuration`` (Milliseconds): how long each handler ran, one value per
  message (at most 100 values a line, the format's limit: more make more lines).

Both carry the dimensions ``type`` and ``outcome`` (``succeeded``, ``failed``,
``rejected``), and ``outcome`` alone, for an alarm on every failure whatever the
type. A type no installed plugin registered is ``(unknown)``. The namespace is
``LETSGO_WORKER_METRICS_NAMESPACE`` (``LetsGoWorker``).

The format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from host.core.dispatch import Outcome

#: The most values one metric may carry in one EMF document.
MAX_VALUES = 100

#: Each metric is published per type and outcome, and per outcome alone.
DIMENSIONS = [["type", "outcome"], ["outcome"]]

# Batches of the local runtime run on several threads: one line is written whole before the next.
_write_lock = threading.Lock()


def batch_documents(
    outcomes: list[Outcome], namespace: str, *, timestamp_ms: int | None = None, request_id: str | None = None,
) -> list[dict[str, Any]]:
    """The EMF documents of one batch: one per type and outcome (more when over :data:`MAX_VALUES` durations)."""
    timestamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    groups: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        key = (outcome.metric_type, outcome.status.value)
        counts[key] = counts.get(key, 0) + 1
        durations = groups.setdefault(key, [])
        seconds = outcome.handler_seconds
        if seconds is not None:
            durations.append(round(seconds * 1000, 3))
    documents = []
    for (type_, status), count in counts.items():
        durations = groups[(type_, status)]
        chunks = [durations[start : start + MAX_VALUES] for start in range(0, len(durations), MAX_VALUES)] or [[]]
        for number, chunk in enumerate(chunks):
            metrics: list[dict[str, str]] = []
            document: dict[str, Any] = {"type": type_, "outcome": status}
            if number == 0:  # the count once; the further lines carry only the rest of the durations
                metrics.append({"Name": "Messages", "Unit": "Count"})
                document["Messages"] = count
            if chunk:
                metrics.append({"Name": "HandlerDuration", "Unit": "Milliseconds"})
                document["HandlerDuration"] = chunk
            if request_id:
                document["requestId"] = request_id  # a property, not a dimension: finds the batch's log lines
            document["_aws"] = {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": DIMENSIONS, "Metrics": metrics}],
            }
            documents.append(document)
    return documents


def write_batch_metrics(
    outcomes: list[Outcome], namespace: str, *, request_id: str | None = None, stream: TextIO | None = None,
) -> None:
    """Write the EMF lines of one batch to ``stream`` (standard output), each in one piece."""
    if not outcomes:
        return
    text = "".join(
        json.dumps(document, separators=(",", ":")) + "\n"
        for document in batch_documents(outcomes, namespace, request_id=request_id)
    )
    out = stream if stream is not None else sys.stdout
    with _write_lock:
        out.write(text)
        out.flush()
