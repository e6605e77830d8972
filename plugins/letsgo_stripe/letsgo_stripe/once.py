"""Run each handler once per Stripe event id, with the host's idempotency store (``claim``/``release``).

Two keys per handler and event:

- ``stripe:<event id>:<module.handler>`` is claimed for days once the handler
  succeeded: later deliveries of the event skip it.
- ``stripe:<event id>:<module.handler>:running`` is a lease held while the
  handler runs, so that duplicates delivered at the same time do not run it
  in parallel. It lapses by itself if the process dies mid-handler.

A delivery that finds the lease taken skips the handler on its first receive:
the delivery holding the lease is responsible for it, and its message is only
deleted once the handler succeeded (or is redelivered if it crashed). A
redelivery (receive count above 1) runs the handler anyway, because the lease
may be its own, left by a crashed attempt: an event is never lost to a stale
lease, at worst run twice.
"""

from __future__ import annotations

from typing import Any

#: How long a handler that succeeded is remembered: longer than Stripe retries an event (3 days).
DONE_TTL_SECONDS = 7 * 24 * 3600
#: Shortest lease held while a handler runs.
MIN_LEASE_SECONDS = 60.0
#: Lifetime of the claim that only checks whether the "done" key is held (released at once).
_PROBE_TTL_SECONDS = 1.0


class Once:
    """Run-once bookkeeping for one handler of one Stripe event; every method does store I/O."""

    def __init__(self, store: Any, event_id: str, handler_name: str, *, lease_seconds: float, receive_count: int):
        self.store = store
        self.done_key = f"stripe:{event_id}:{handler_name}"
        self.lease_key = f"{self.done_key}:running"
        self.lease_seconds = max(lease_seconds, MIN_LEASE_SECONDS)
        self.receive_count = receive_count
        self.holds_lease = False
        #: Why :meth:`begin` said to skip, for the log.
        self.skipped_because = ""

    def begin(self) -> bool:
        """True when the handler should run now; False to skip it (see :attr:`skipped_because`)."""
        self.holds_lease = self.store.claim(self.lease_key, ttl_seconds=self.lease_seconds)
        if not self.holds_lease and self.receive_count <= 1:
            self.skipped_because = "another delivery of the event is running it"
            return False
        if self._done():
            self._release_lease()
            self.skipped_because = "it already ran for this event"
            return False
        return True

    def succeeded(self) -> None:
        """Remember the success (before dropping the lease, so no delivery can slip in between)."""
        self.store.claim(self.done_key, ttl_seconds=DONE_TTL_SECONDS)
        self._release_lease()

    def failed(self) -> None:
        """Let the next delivery run the handler again."""
        self._release_lease()

    def _done(self) -> bool:
        if self.store.claim(self.done_key, ttl_seconds=_PROBE_TTL_SECONDS):
            self.store.release(self.done_key)  # it was free: undo the probe
            return False
        return True

    def _release_lease(self) -> None:
        if self.holds_lease:
            self.store.release(self.lease_key)
            self.holds_lease = False
