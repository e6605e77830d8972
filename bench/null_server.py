"""The same HTTP stack as ``letsgo-worker serve`` answering ``POST /`` with 201, storing nothing.

``host.local.http_server.LocalServer`` with a queue whose ``enqueue_many`` only makes
ids: the request parsing, intake checks and responses are the real ones, the
durable commit is not. ``python -m bench.null_server`` prints ``listening on
URL`` to stderr and runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import uuid


class NullQueue:
    """Accepts messages and forgets them."""

    def enqueue_many(self, messages, delay_seconds=0):
        """Return a fresh id per message; store nothing."""
        return [message_id or str(uuid.uuid4()) for message_id, _body in messages]

    def counts(self):
        """Nothing is ever pending."""
        return {"visible": 0, "in_flight": 0, "waiting": 0, "dead_letters": 0}


def main() -> int:
    from host.local.http_server import LocalServer

    queue = NullQueue()
    server = LocalServer("127.0.0.1", 0, queue=queue, health=lambda: {"status": "ok", "queue": queue.counts()}).start()
    print(f"null server listening on {server.url}", file=sys.stderr, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    while not stopped.wait(1.0):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
