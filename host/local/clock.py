"""Wall-clock jumps: the local queue's times follow the clock on the wall, so when it jumps, move them.

The queue stores when each message becomes visible as a wall-clock instant,
as SQS does, so that they survive a restart. A wall clock set an hour forward
would make every in-flight message visible at once (run twice at the same
time); set an hour back, a 2-second delay would last an hour. The monotonic
clock does not jump, and on Linux it does not advance while the machine
sleeps: the difference between the two says by how much the wall clock moved
on its own (a jump, or a laptop's sleep), and every stored instant is moved by
as much, so each message keeps the time it had left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host.local.queue import LocalQueue

logger = logging.getLogger("letsgo.local_queue")

#: A wall clock that moved this much more (or less) than the monotonic one has jumped.
JUMP_SECONDS = 2.0

#: How often the clocks are compared.
CHECK_SECONDS = 1.0


class ClockWatch:
    """Compares the two clocks every :data:`CHECK_SECONDS` and moves the queue's times after a jump.

    Only the server's process runs one (delivery processes share its file), so a jump is corrected once.
    """

    def __init__(
        self,
        queue: LocalQueue,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue = queue
        self._wall = wall
        self._monotonic = monotonic
        self._offset = wall() - monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="letsgo-clock", daemon=True)

    def start(self) -> ClockWatch:
        """Watch on a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def check(self) -> float:
        """Compare the clocks once; after a jump move the queue's times by it. Return the jump (0 for none)."""
        offset = self._wall() - self._monotonic()
        jump = offset - self._offset
        if abs(jump) < JUMP_SECONDS:
            return 0.0
        moved = self.queue.shift_times(jump)
        self._offset = offset
        logger.warning(
            "the wall clock moved %+.0fs on its own (set by hand or by NTP, or the machine slept); the times of"
            " %d queued message(s) were moved with it, so each keeps the time it had left",
            jump, moved,
        )
        return jump

    def _run(self) -> None:
        while not self._stopping.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:
                logger.exception("could not correct the queue's times for a clock jump")
