"""``letsgo-worker send``: enqueue one message on the local server or SQS."""

from __future__ import annotations

import argparse

from host.cli.common import command_help, lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    send = commands.add_parser(
        "send", help="enqueue one message on the local server (or SQS)",
        **command_help(
            "Enqueue one message {type, payload} on the local server (POST /) or, with --sqs, on an SQS "
            "queue, and print its id (for a duplicate --dedup-id, the first message's). The type and payload are first checked against the message types "
            "of the installed plugins (as `letsgo-worker types` lists them): an unknown type or a payload "
            "that fails validation exits 2 with the error, and nothing is sent. --no-check skips that, for "
            "a worker whose plugins are not installed here.",
            env=("LETSGO_LOCAL_QUEUE_URL  the local server's URL (default http://127.0.0.1:3002)",
                 "AWS_REGION, AWS_ENDPOINT_URL  for --sqs",
                 "LETSGO_WORKER_LARGE_MESSAGE_BUCKET  for --sqs: the S3 bucket of bodies over 256 KiB",
                 "LETSGO_WORKER_PLUGINS, LETSGO_WORKER_DISABLE_PLUGINS  which plugins' types the check knows"),
            examples=("letsgo-worker send OrderNew '{\"orderId\": \"o-1\", \"customerId\": \"c-1\"}'",
                      "letsgo-worker send OrderNew --file order.json --delay 2.5",
                      "letsgo-worker send OrderNew --file order.json --group customer-1 "
                      "--sqs https://sqs.us-east-1.amazonaws.com/123456789012/orders.fifo",
                      "letsgo-worker send OrderPaid '{\"orderId\": \"o-1\"}' --group customer-42 --dedup-id o-1-paid",
                      "letsgo-worker send SomeRemoteType '{}' --no-check"),
        ),
    )
    send.add_argument("type", help="message type, e.g. OrderNew")
    send.add_argument("payload", nargs="?", help="payload as JSON (required: write null for none)")
    send.add_argument("--file", help="read the payload JSON from this file")
    send.add_argument("--delay", type=float, default=0, help="delay in seconds, 0-900 (fractions are kept locally)")
    send.add_argument("--group", metavar="GROUP_ID",
                      help="FIFO message group: messages of one group are handled in order, one batch at a time")
    send.add_argument("--dedup-id", metavar="DEDUP_ID",
                      help="FIFO deduplication id: another message with it within 5 minutes is dropped")
    send.add_argument("--url", help="local server URL (default LETSGO_LOCAL_QUEUE_URL or http://127.0.0.1:3002)")
    send.add_argument("--sqs", metavar="QUEUE_URL", help="send to this SQS queue instead of the local server (a body over "
                      "256 KiB goes through the S3 bucket LETSGO_WORKER_LARGE_MESSAGE_BUCKET)")
    send.add_argument("--no-check", action="store_true",
                      help="send without checking the type and payload against the installed plugins")
    send.set_defaults(run=lazy("host.services.enqueue:cli_send"))
