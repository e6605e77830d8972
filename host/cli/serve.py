"""``letsgo-worker serve``: the local runtime, or a real SQS queue read from any machine."""

from __future__ import annotations

import argparse

from host.cli.common import command_help, lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    serve = commands.add_parser(
        "serve", help="run the local runtime: HTTP intake, durable queue, scheduler",
        **command_help(
            "Run the worker locally: POST / stores messages in a durable SQLite queue with SQS semantics, "
            "delivery hands them in batches to the same code as Lambda, and the scheduler fires ticks. "
            "With --sqs it reads a real SQS queue instead. Stops gracefully on SIGINT or SIGTERM.",
            env=("PORT, LETSGO_WORKER_HOST  where to listen (default 127.0.0.1:3002)",
                 "LETSGO_WORKER_DB  the queue file (default .letsgo/worker.db)",
                 "LETSGO_WORKER_PROCESSES  delivery processes (--workers)",
                 "LETSGO_WORKER_SCHEDULE, LETSGO_WORKER_SCHEDULE_TIMEZONE  the scheduled ticks",
                 "LETSGO_WORKER_LOG_FORMAT, LETSGO_WORKER_LOG_LEVEL  the log lines",
                 "every other worker setting and each plugin's own (see the README's Configuration)"),
            examples=("letsgo-worker serve                      # 127.0.0.1:3002, .letsgo/worker.db",
                      "letsgo-worker serve --port 0 --db /tmp/q.db",
                      "letsgo-worker serve --workers 2          # deliver in 2 processes (CPU-bound handlers)",
                      "letsgo-worker serve --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue"),
        ),
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, LETSGO_WORKER_HOST)")
    serve.add_argument("--port", help="port to listen on (default 3002, PORT; 0 picks a free one)")
    serve.add_argument("--db", help="SQLite queue file (default .letsgo/worker.db, LETSGO_WORKER_DB)")
    serve.add_argument(
        "--sqs", metavar="QUEUE_URL",
        help="read a real SQS queue instead of the local one (SIGTERM drains for LETSGO_WORKER_DRAIN_SECONDS;"
             " /livez and /readyz for probes)",
    )
    serve.add_argument(
        "--workers", metavar="N",
        help="deliver in N processes of their own, for CPU-bound handlers (default 0: in the server's process; "
             "LETSGO_WORKER_PROCESSES)",
    )
    serve.set_defaults(run=lazy("host.local.runtime:cli_serve"))
