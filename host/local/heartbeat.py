"""The visibility heartbeat: a message whose handler is still running stays invisible, up to a cap.

A received message is invisible for the visibility timeout. A handler that
needs longer would see its message delivered again, to another worker, while it
still runs. The heartbeat extends the visibility of every record still being
handled, about every half visibility timeout, by one visibility timeout, and
never beyond ``max_extension`` seconds after the record was received: a hung
handler's message still becomes visible again at the cap, and is received
again (or dead-lettered once it has been received the maximum number of times).

It works through the message source's ``change_visibility(records, seconds)``
(the local queue and :class:`host.aws.sqs_source.SqsSource` both have it), so
one piece serves ``serve`` and ``serve --sqs``. Records settled in the
meantime are forgotten and no longer extended.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from host.core.backoff import SQS_MAX_VISIBILITY_SECONDS  # SQS refuses more than 12 hours after the receive

logger = logging.getLogger("letsgo.heartbeat")


class Heartbeat:
    """Extends the visibility of the records being handled, on a thread of its own.

    :param source: a message source with ``change_visibility(records, seconds)``
    :param visibility_timeout: seconds a received record is invisible (and each extension adds)
    :param max_extension: seconds after its receive beyond which a record is never extended
    """

    def __init__(self, source: Any, visibility_timeout: float, max_extension: float) -> None:
        self.source = source
        self.visibility_timeout = visibility_timeout
        self.max_extension = min(max_extension, SQS_MAX_VISIBILITY_SECONDS)
        #: Every half visibility timeout, so that an extension is never late even if one call is slow.
        self.interval = max(0.05, visibility_timeout / 2)
        # id(record) -> [record, received at (monotonic), invisible until (monotonic)]
        self._watched: dict[int, list[Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_source(cls, source: Any, visibility_timeout: float, max_extension: float) -> Heartbeat | None:
        """A heartbeat for ``source``, or None when there is nothing to extend with (or it is turned off)."""
        if max_extension <= visibility_timeout or visibility_timeout <= 0:
            return None  # the cap is reached before any extension
        if not callable(getattr(source, "change_visibility", None)):
            return None
        return cls(source, visibility_timeout, max_extension)

    def start(self) -> Heartbeat:
        """Start beating."""
        self._thread = threading.Thread(target=self._run, name="letsgo-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating; the records still watched are left as they are."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def alive(self) -> bool:
        """Whether the heartbeat's thread runs (or it was never started)."""
        return self._thread is None or self._thread.is_alive() or self._stopping.is_set()

    def watch(self, records: list[dict[str, Any]]) -> None:
        """Start extending ``records``, received just now."""
        now = time.monotonic()
        with self._lock:
            for record in records:
                self._watched[id(record)] = [record, now, now + self.visibility_timeout]

    def forget(self, records: list[dict[str, Any]]) -> None:
        """Stop extending ``records`` (settled, or released)."""
        with self._lock:
            for record in records:
                self._watched.pop(id(record), None)

    def watched(self) -> int:
        """How many records are being extended."""
        with self._lock:
            return len(self._watched)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the heartbeat must live on; the records simply come back at their timeout
                logger.exception("extending the visibility of running messages failed")

    def beat(self) -> int:
        """Extend every watched record that lapses before the next beat (with a beat to spare); return how many.

        Each is made invisible for one more visibility timeout from now, or up
        to its cap; a record at its cap is forgotten, with a warning.
        """
        now = time.monotonic()
        due: dict[int, list[dict[str, Any]]] = {}
        capped = []
        with self._lock:
            for key, entry in list(self._watched.items()):
                record, received, until = entry
                if until - now > 2 * self.interval:
                    continue
                seconds = min(self.visibility_timeout, received + self.max_extension - now)
                if seconds <= 0 or now + seconds <= until:
                    capped.append(record)
                    del self._watched[key]
                    continue
                entry[2] = now + seconds
                due.setdefault(seconds, []).append(record)
        for record in capped:
            logger.warning(
                "message %s is still being handled %gs after its receive (LETSGO_WORKER_MAX_VISIBILITY_EXTENSION);"
                " its visibility is no longer extended, so it is delivered again when it lapses (a handler may hang)",
                record.get("messageId"), self.max_extension,
            )
        extended = 0
        for seconds, records in due.items():
            extended += self.source.change_visibility(records, seconds) or 0
        if extended:
            logger.debug("extended the visibility of %d running message(s)", extended)
        return extended
