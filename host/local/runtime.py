"""``letsgo-worker serve``: the local runtime. HTTP intake, durable queue, delivery, scheduler.

By default messages come in over HTTP and wait in the SQLite queue; with
``--sqs QUEUE_URL`` they come from a real SQS queue instead. Either way the
same delivery loop hands them, batch by batch, to the batch processor that
``lambda_entry.handler`` runs in Lambda. SIGINT or SIGTERM stops gracefully:
no new batches, running ones get ``LETSGO_WORKER_DRAIN_SECONDS`` to finish, and
whatever is left is released, visible again at once (a second signal stops at
once). Under ``--sqs`` such a drain exits 0: what was left runs on another
worker. ``/livez`` says the process and its loops are alive, ``/readyz`` that
it can deliver (the queue is reachable) and is not draining.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING, Any

from host.errors import StartupError

if TYPE_CHECKING:
    from host.config import Settings

logger = logging.getLogger("letsgo.serve")



def cli_serve(args: argparse.Namespace) -> int:
    """Run the local runtime until SIGINT/SIGTERM; return the exit status."""
    from host.config import Settings

    # host.cli.main has loaded .env already; flags go through the settings' own parsers.
    settings = Settings.from_env(flags={
        "host": ("--host", args.host), "port": ("--port", args.port), "db_path": ("--db", args.db),
        "delivery_processes": ("--workers", getattr(args, "workers", None)),
    })
    if settings.delivery_processes and getattr(args, "sqs", None):
        raise StartupError("--workers is for the local queue; under --sqs run several `serve --sqs` instead")
    logging.getLogger("letsgo").setLevel(settings.log_level)
    runtime = Runtime(settings, sqs_queue_url=getattr(args, "sqs", None))
    # Handlers first: a signal during start-up then stops cleanly once start-up is done.
    runtime.handle_signals()
    try:
        runtime.start()
    except BaseException:
        runtime.stop()  # what did start (plugins' letsgo_startup, the lock) is undone
        raise
    print(f"letsgo-worker listening on {runtime.server.url}", file=sys.stderr, flush=True)
    if not is_loopback(settings.host) and runtime.sqs_queue_url:
        logger.info("listening on %s, beyond this machine: under --sqs POST / takes nothing; /livez, /readyz,"
                    " /healthz and plugin routes are served", settings.host)
    elif not is_loopback(settings.host):
        logger.warning(
            "listening on %s, beyond this machine: POST / takes any message without authentication "
            "(a letsgo:stripe message skips webhook signatures); bind 127.0.0.1 unless a firewall guards the port",
            settings.host,
        )
    runtime.wait_for_signal()
    left_running = runtime.stop()
    if left_running and runtime.sqs_queue_url:
        # A container's drain: what still ran is back in the queue, visible now, for the next worker.
        logger.warning(
            "drained: %d batch(es) still running after %gs (LETSGO_WORKER_DRAIN_SECONDS) were returned to"
            " the SQS queue, visible again at once; exiting", left_running, settings.drain_timeout,
        )
        logging.shutdown()
        os._exit(0)  # a normal exit would wait for the threads of the handlers still running
    if left_running:
        logger.warning(
            "exiting with %d batch(es) still running after %gs; their messages are delivered again at the next start",
            left_running, settings.drain_timeout,
        )
        logging.shutdown()
        os._exit(1)  # a normal exit would wait for the threads of the handlers still running
    if runtime.sqs_queue_url:
        logger.info("drained: every running message finished; exiting")
    return 0


class ServeLock:
    """An exclusive lock beside the database: one ``serve`` per queue file.

    Holding it, a server knows that messages still claimed in the database
    were claimed by a server that stopped (even by ``kill -9``), and can make
    them visible at once. The operating system drops the lock when the process dies.
    """

    def __init__(self, db_path: str) -> None:
        # realpath: a second name for the same file (a symlink) must find the same lock.
        self.path = os.path.realpath(db_path) + ".lock"
        self._file = None

    def acquire(self) -> bool:
        """Take the lock; raise :class:`StartupError` when another server holds it.

        Returns False where file locks are unavailable (then nothing is reclaimed).
        """
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; run one server per database
            return False
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise StartupError(
                f"cannot create the serve lock {self.path}: {error.strerror or error}; it must be a file"
                " this user can write, beside the queue (or pass another --db)"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StartupError(
                f"another `letsgo-worker serve` (pid {holder}) is using {self.path[:-5]}; stop it or pass another --db"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def release(self) -> None:
        """Give the lock up."""
        if self._file is not None:
            self._file.close()
            self._file = None


def is_loopback(host: str) -> bool:
    """True when ``host`` is an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve beyond this machine
        return False


class Runtime:
    """The pieces of a running local server, started and stopped in order."""

    def __init__(self, settings: Settings, *, sqs_queue_url: str | None = None) -> None:
        self.settings = settings
        self.sqs_queue_url = sqs_queue_url
        self.worker = None
        self.queue = None
        self.lock = None
        self.server = None
        self.delivery = None
        self.processes = None
        #: One :class:`host.local.timer.Scheduler` per schedule, in the process holding the serve lock.
        self.schedulers: list = []
        self.clock = None
        self._leader = True
        self._signalled = threading.Event()
        self.started = False

    def start(self) -> None:
        """Check the schedule, open the queue, bind the port, start the worker, then deliver and tick."""
        from host.local.delivery import Delivery
        from host.local.http_server import LocalServer
        from host.local.routes import collect_routes
        from host.local.timer import load_schedule

        settings = self.settings
        # An invalid schedule stops start-up before anything else happens.
        schedule = load_schedule(settings.schedule, settings.schedule_timezone) if settings.schedule else None
        source = self._sqs_source() if self.sqs_queue_url else self._open_local_queue()
        self.server = LocalServer(
            settings.host, settings.port, queue=self.queue, health=self._health,
            enqueue=lambda message, delay_seconds=0: self.worker.enqueue(message, delay_seconds),
            intake_note=f"this server delivers messages from the SQS queue {self.sqs_queue_url}; send messages there",
            probes={"/livez": self._liveness, "/readyz": self._readiness},
        )
        self.settings = settings = _replace(settings, port=self.server.port)
        from host.ops.metrics import prepare_serve_metrics

        # Before the worker and any delivery process start: they count into what GET /metrics shows.
        self.settings = settings = prepare_serve_metrics(settings)
        self.worker = self._start_worker(settings)
        self.server.routes = collect_routes(self.worker)
        self.server.app.ops = self._dashboard(schedule)
        self.server.start()
        for route in self.server.routes:
            logger.info("route %s %s (plugin %s)", route.method, route.path, route.plugin)

        if settings.delivery_processes:
            from host.local.processes import DeliveryProcesses

            self.processes = DeliveryProcesses(settings, self.queue, settings.delivery_processes).start()
        else:
            self.delivery = Delivery.from_settings(
                # Under --sqs, a long poll of up to 10 s, and no longer than a drain: SIGTERM is not kept waiting.
                self.worker, source, settings,
                poll_seconds=max(1.0, min(10.0, settings.drain_timeout)) if self.sqs_queue_url else 1.0,
            ).start()
        if self.queue is not None:
            from host.local.clock import ClockWatch

            self.clock = ClockWatch(self.queue).start()
        self._start_schedulers(schedule)
        self.started = True

    def _start_schedulers(self, schedule) -> None:
        """Fire ``LETSGO_WORKER_SCHEDULE`` and every named schedule, each on its own timing.

        Only here, in the process that holds the serve lock (the delivery
        processes of ``--workers N`` never fire), so each tick fires once per
        queue file; its outcome goes to the queue's ``ticks`` table.
        """
        from host.local.timer import HOW_TO_ENABLE, Scheduler

        if not self._leader:
            logger.warning("file locks are unavailable here: this server fires the schedules; run one server per queue file")
        region = self.settings.aws_region or "local"
        on_tick = self.queue.record_tick if self.queue is not None else None
        if schedule is None:
            logger.info(HOW_TO_ENABLE)
        else:
            self.schedulers.append(Scheduler(self.worker, schedule, region=region, on_tick=on_tick).start())
        for named in self.worker.schedules:
            self.schedulers.append(
                Scheduler(self.worker, named.schedule, region=region, name=named.name, on_tick=on_tick).start()
            )

    def _open_local_queue(self):
        from host.local.queue import LocalQueue, QueueError

        self.lock = ServeLock(self.settings.db_path)
        exclusive = self._leader = self.lock.acquire()
        try:
            self.queue = LocalQueue.from_settings(self.settings)
            # A damaged file found now is one clear line; found by a write, it would be a 503 per request.
            self.queue.check_integrity()
            reclaimed = self.queue.reclaim_in_flight() if exclusive else 0
            counts = self.queue.counts()
        except (QueueError, sqlite3.DatabaseError) as error:
            raise StartupError(_unusable_queue(self.settings.db_path, error)) from None
        if reclaimed:
            logger.info("%d message(s) in flight when the server last stopped are delivered again", reclaimed)
        logger.info(
            "local queue %s: %d visible, %d waiting, %d dead-lettered",
            self.queue.path, counts["visible"] + counts["in_flight"], counts["waiting"], counts["dead_letters"],
        )
        return self.queue

    def _sqs_source(self):
        try:
            from host.aws.sqs_source import SqsSource
        except ImportError as error:
            raise StartupError(f"serve --sqs is not available in this installation: {error}") from None
        return SqsSource(self.sqs_queue_url, self.settings)

    def _dashboard(self, schedule):
        """``/dashboard`` and ``/metrics`` of this server, looking into the queue it delivers from."""
        from host.ops.web import OpsWeb, build

        for route in self.server.routes:  # the dashboard answers first: a plugin's route there would never be called
            if OpsWeb.serves(route.path):
                raise StartupError(f"plugin {route.plugin!r} registered {route.method} {route.path}, which the dashboard"
                                   " serves (/dashboard and below, /metrics); register another path")

        if self.queue is not None:
            from host.ops.local_inspector import LocalInspector

            inspector = LocalInspector.of_queue(self.queue)
        else:
            from host.ops.sqs_inspector import SqsInspector

            inspector = SqsInspector(self.sqs_queue_url, region=self.settings.aws_region)
        settings = self.settings
        return build(inspector, self.worker, host=settings.host, running_schedule=schedule,
                     token=settings.dashboard_token, read_only=settings.dashboard_read_only)

    def _enqueuer(self, settings: Settings):
        """Where ``ctx.enqueue`` goes: this server's queue, or under ``--sqs`` the queue being read (unless configured)."""
        if self.queue is not None:
            return self.queue
        from host.services.enqueue import SqsEnqueuer

        return SqsEnqueuer(settings.queue_url or self.sqs_queue_url, settings.aws_region, settings.large_message_bucket)

    def _start_worker(self, settings: Settings):
        from host.core.plugins import report_problems
        from host.core.worker import Worker, set_worker

        worker = Worker(settings)
        # The idempotency store keeps its records beside the local queue.
        worker.local_db_path = None if self.queue is None else self.queue.path
        worker.enqueuer = self._enqueuer(settings)
        worker.start()
        report_problems(worker.problems)
        from host.core.logs import log_startup

        log_startup(worker)
        # This is the process's worker: code calling get_worker() (lambda_entry.handler) gets this one.
        set_worker(worker)
        return worker

    def _health(self) -> dict[str, Any]:
        health: dict[str, Any] = {"status": "ok"}
        problem = self.queue.file_problem() if self.queue is not None else None
        if problem:
            health.update(status="error", error=problem)
        if self.queue is not None:
            health["queue"] = self.queue.counts()
        if self.delivery is not None:
            health["batches_in_flight"] = self.delivery.in_flight()
        if self.processes is not None:
            health["delivery_processes"] = self.processes.pids()
        return health

    def _liveness(self) -> dict[str, Any]:
        """``GET /livez``: the process answers and its delivery loop (dispatcher, heartbeat) is alive."""
        if self.delivery is not None and not self.delivery.alive():
            return {"status": "error", "error": "the delivery loop has stopped"}
        return {"status": "ok"}

    def _readiness(self) -> dict[str, Any]:
        """``GET /readyz``: not draining, and the queue can be used (SQS reached at the last call, the file intact)."""
        if self._signalled.is_set():
            return {"status": "draining", "draining": True}
        source = self.delivery.source if self.delivery is not None else None
        readiness = getattr(source, "readiness", None)
        problem = (readiness() if readiness else None) or (self.queue.file_problem() if self.queue is not None else None)
        if problem:
            return {"status": "unavailable", "draining": False, "error": problem}
        return {"status": "ok", "draining": False}

    def handle_signals(self) -> None:
        """Make SIGINT and SIGTERM request a graceful stop; a second one exits at once."""

        def on_signal(number: int, frame: Any) -> None:
            if self._signalled.is_set():
                logger.warning("second %s: stopping now; unfinished messages are delivered again at the next start",
                               signal.Signals(number).name)
                os._exit(1)
            logger.info("%s: stopping (a second one stops at once)", signal.Signals(number).name)
            self._signalled.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def wait_for_signal(self) -> None:
        """Block until SIGINT or SIGTERM has asked to stop."""
        while not self._signalled.wait(1.0):
            pass

    def stop(self) -> int:
        """Stop in order: ticks and batches first (they may still enqueue), then HTTP, the worker, the queue.

        Returns how many batches were still running when their grace period
        ended. Their messages are released, so the serve lock stays held until
        the process exits: another ``serve`` must not run them while they still run here.
        """
        left_running, bound = 0, self.settings.drain_timeout
        for scheduler in self.schedulers:
            scheduler.stop(bound)
        if self.delivery is not None:
            left_running = self.delivery.stop(bound)
        if self.processes is not None:
            self.processes.stop(bound)
        if self.clock is not None:
            self.clock.stop()
        if self.server is not None:
            self.server.stop()
            if self.server.app.ops is not None:
                self.server.app.ops.close()
        if self.worker is not None:
            self.worker.stop()
        if self.queue is not None:
            self.queue.close()
        if self.lock is not None and not left_running:
            self.lock.release()
        if self.started:  # a start-up that failed says why itself; "stopped" would only hide it
            logger.info("stopped")
        return left_running


def _unusable_queue(path: str, error: Exception) -> str:
    """What to say when the queue file cannot be used at start-up, with what to do about it."""
    text = str(error)
    if "malformed" in text or "not a database" in text:
        return (
            f"the local queue database {path} is damaged ({text}); move it aside and start again"
            f" (`sqlite3 {path} .recover` may save its rows), or restore a copy"
        )
    return text


def _replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)
