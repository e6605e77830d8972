"""``letsgo-worker dashboard --sqs QUEUE_URL``: the operations dashboard of an SQS queue and its DLQ.

The same pages as ``serve``'s ``/dashboard`` (and ``/metrics`` with the queue
gauges), served by the same app and HTTP server, over the SQS inspector.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from host.cli.common import command_help, lazy

#: The port the dashboard listens on when --port is not given: beside serve's 3002.
DEFAULT_PORT = 3003

def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    dashboard = commands.add_parser(
        "dashboard", help="serve the operations dashboard of an SQS queue and its dead-letter queue",
        **command_help(
            "Serve the operations dashboard (counts, dead letters with redrive and delete, plugins, schedules) "
            "and /metrics for an SQS queue, on http://HOST:PORT/dashboard. SQS has no true peek: looking at a "
            "dead letter receives it (with a short visibility timeout), which counts as a receive. Redrive uses "
            "SQS's message-move task.",
            env=(
                "LETSGO_WORKER_DASHBOARD_TOKEN      token the pages and /metrics require (needed when --host is beyond loopback)",
                "LETSGO_WORKER_DASHBOARD_READ_ONLY  1: show everything, refuse every action (as --read-only)",
                "AWS_REGION, AWS_ENDPOINT_URL       where SQS is (the region is also read from the queue URL);",
                "                                   boto3 reads its credentials as usual (AWS_PROFILE, ...)",
            ),
            examples=(
                "letsgo-worker dashboard --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
                "letsgo-worker dashboard --sqs QUEUE_URL --dlq DLQ_URL --port 8080 --read-only",
            ),
        ),
    )
    dashboard.add_argument("--sqs", metavar="QUEUE_URL", required=True, help="the SQS queue to look into")
    dashboard.add_argument("--dlq", metavar="DLQ_URL",
                           help="its dead-letter queue (default: the one named by the queue's RedrivePolicy)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    dashboard.add_argument("--port", default=str(DEFAULT_PORT), help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    dashboard.add_argument("--read-only", action="store_true", help="show everything, refuse every action")
    dashboard.set_defaults(run=lazy("host.cli.dashboard:cli_dashboard"))


def cli_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard of ``--sqs`` until SIGINT or SIGTERM; return the exit status."""
    from host.config import Settings
    from host.core.plugins import report_problems
    from host.core.worker import get_worker
    from host.errors import StartupError
    from host.local.http_server import LocalServer
    from host.local.runtime import is_loopback
    from host.ops.web import build

    settings = Settings.from_env(flags={"host": ("--host", args.host), "port": ("--port", args.port)})
    try:
        from host.ops.sqs_inspector import SqsInspector

        inspector = SqsInspector(args.sqs, args.dlq, region=settings.aws_region)
    except ImportError as error:
        raise StartupError(f"dashboard --sqs needs boto3 (pip install 'letsgo-worker[aws]'): {error}") from None
    except Exception as error:  # a queue that does not exist, no credentials, no network: say which
        raise StartupError(f"cannot look into the SQS queue {args.sqs}: {type(error).__name__}: {error}") from None
    # The plugins and types shown are this installation's: the worker is started, never fed messages.
    worker = get_worker()
    report_problems(worker.problems)
    server = LocalServer(settings.host, settings.port, queue=None,
                         intake_note=f"this is the dashboard of the SQS queue {args.sqs}; send messages there")
    server.app.ops = build(inspector, worker, host=settings.host, token=settings.dashboard_token,
                           read_only=args.read_only or settings.dashboard_read_only)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    server.start()
    print(f"letsgo-worker dashboard of {args.sqs} on {server.url}/dashboard", file=sys.stderr, flush=True)
    if not is_loopback(settings.host) and not settings.dashboard_token:
        print("letsgo-worker: warning: bound beyond this machine with no LETSGO_WORKER_DASHBOARD_TOKEN: "
              "every page refuses until one is set", file=sys.stderr, flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        worker.stop()
    return 0
