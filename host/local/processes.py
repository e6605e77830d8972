"""``serve --workers N``: delivery in N processes of their own, claiming from the same SQLite queue.

For CPU-bound handlers, which would otherwise share one interpreter lock with
intake. The server's process keeps intake, plugin routes and the timer; each
delivery process starts its own worker (plugins, ``letsgo_startup``) and runs
the same :class:`~host.local.delivery.Delivery` as a single-process server.

A delivery process that dies (``kill -9``, a handler calling ``os._exit``) is
replaced; the messages it had claimed are made visible again at once, since
its receipt handles carry its name (the claimer), so they need not wait out
their visibility timeout. Nothing answered 201 is lost: it is on disk before
any delivery process sees it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from host.config import Settings
    from host.local.queue import LocalQueue

logger = logging.getLogger("letsgo.serve")

#: How often the server looks for delivery processes that died.
_WATCH_SECONDS = 0.5


@dataclass
class _Child:
    number: int
    claimer: str
    process: BaseProcess


class DeliveryProcesses:
    """N delivery processes, watched and replaced while the server runs."""

    def __init__(self, settings: Settings, queue: LocalQueue, count: int) -> None:
        self.settings = settings
        self.queue = queue
        self.count = count
        # spawn, not fork: the server has threads (HTTP, commit, timer) a fork would copy mid-step.
        self._context = multiprocessing.get_context("spawn")
        self._children: list[_Child] = []
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="letsgo-delivery-watch", daemon=True)

    def start(self) -> DeliveryProcesses:
        """Start every delivery process and the thread that replaces those that die."""
        self._children = [self._spawn(number) for number in range(1, self.count + 1)]
        self._watcher.start()
        return self

    def pids(self) -> list[int]:
        """The process ids of the delivery processes now running."""
        return [child.process.pid for child in self._children if child.process.pid is not None]

    def _spawn(self, number: int) -> _Child:
        claimer = f"w{number}x{secrets.token_hex(3)}"
        process = self._context.Process(
            target=run_delivery_process, args=(self.settings, claimer, os.getpid()), name=f"letsgo-delivery-{number}", daemon=True,
        )
        process.start()
        logger.info("delivery process %d started (pid %d)", number, process.pid)
        return _Child(number, claimer, process)

    def _watch(self) -> None:
        while not self._stopping.wait(_WATCH_SECONDS):
            for index, child in enumerate(self._children):
                if child.process.is_alive() or self._stopping.is_set():
                    continue
                released = self.queue.release_claims_of(child.claimer)
                logger.warning(
                    "delivery process %d (pid %d) ended with exit status %s; %d message(s) it had received are"
                    " delivered again; starting another",
                    child.number, child.process.pid, child.process.exitcode, released,
                )
                self._children[index] = self._spawn(child.number)

    def stop(self, timeout: float) -> None:
        """Ask every delivery process to stop (SIGTERM: running batches get ``timeout`` seconds), then wait."""
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        for child in self._children:
            if child.process.is_alive():
                child.process.terminate()
        for child in self._children:
            child.process.join(timeout + 5)
            if child.process.is_alive():
                logger.warning("delivery process %d did not stop in time; killing it", child.number)
                child.process.kill()
                child.process.join()
            self.queue.release_claims_of(child.claimer, crashed=False)


def run_delivery_process(settings: Settings, claimer: str, server_pid: int) -> None:
    """The body of one delivery process: a worker, the queue and a delivery loop.

    It stops on SIGTERM or SIGINT, and when the server that started it is gone
    (killed with ``kill -9``, the process is adopted by another parent).
    """
    from host.core.logs import configure_cli_logging
    from host.core.worker import Worker, set_worker
    from host.local.delivery import Delivery
    from host.local.queue import LocalQueue

    configure_cli_logging(settings.log_level, settings.log_format)
    stop = threading.Event()

    def on_signal(number: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    queue = LocalQueue.from_settings(settings, claimer=claimer)
    worker = Worker(settings)
    worker.local_db_path = queue.path
    worker.enqueuer = queue
    worker.start()
    set_worker(worker)
    delivery = Delivery.from_settings(worker, queue, settings).start()
    try:
        while not stop.wait(1.0) and os.getppid() == server_pid:
            pass
    finally:
        delivery.stop(settings.drain_timeout)
        worker.stop()
        queue.close()
        logging.shutdown()
    # Not a normal exit: that would wait for the threads of handlers that hang, forever. Their
    # messages are delivered again; the server has released this process's claims.
    os._exit(0)
