"""``letsgo-worker send``: enqueue one message on the local server or SQS."""

from __future__ import annotations

import argparse

from host.cli.common import lazy


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    send = commands.add_parser(
        "send", help="enqueue one message on the local server (or SQS)",
        description="Enqueue one message {\"type\": TYPE, \"payload\": PAYLOAD} on the local server (POST /), or on an "
                    "SQS queue with --sqs, and print its message id (for a duplicate --dedup-id, the first message's).",
        epilog="environment: LETSGO_LOCAL_QUEUE_URL (the local server, default http://127.0.0.1:3002),"
               " AWS_REGION and boto3's credentials for --sqs\n"
               "examples:\n"
               "  letsgo-worker send OrderNew '{\"orderId\": \"o-1\"}'\n"
               "  letsgo-worker send OrderNew --file order.json --delay 30\n"
               "  letsgo-worker send OrderPaid '{\"orderId\": \"o-1\"}' --group customer-42 --dedup-id o-1-paid\n"
               "  letsgo-worker send OrderNew '{}' --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("type", help="message type, e.g. OrderNew")
    send.add_argument("payload", nargs="?", help="payload as JSON (default null)")
    send.add_argument("--file", help="read the payload JSON from this file")
    send.add_argument("--delay", type=float, default=0, help="delay in seconds, 0-900 (fractions are kept locally)")
    send.add_argument("--group", metavar="GROUP_ID",
                      help="FIFO message group: messages of one group are handled in order, one batch at a time")
    send.add_argument("--dedup-id", metavar="DEDUP_ID",
                      help="FIFO deduplication id: another message with it within 5 minutes is dropped")
    send.add_argument("--url", help="local server URL (default LETSGO_LOCAL_QUEUE_URL or http://127.0.0.1:3002)")
    send.add_argument("--sqs", metavar="QUEUE_URL", help="send to this SQS queue instead of the local server (a body over "
                      "256 KiB goes through the S3 bucket LETSGO_WORKER_LARGE_MESSAGE_BUCKET)")
    send.set_defaults(run=lazy("host.services.enqueue:cli_send"))
