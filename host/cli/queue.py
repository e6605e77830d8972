"""``letsgo-worker queue stats|list``: what waits in the local queue or an SQS queue, from the command line.

Both commands, and ``dlq``, look through the same inspectors as the dashboard
(:mod:`host.ops.local_inspector`, :mod:`host.ops.sqs_inspector`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from host.cli.common import command_help, lazy

if TYPE_CHECKING:
    from host.ops.inspector import Inspector

#: What the ``--db``/``--sqs`` commands read from the environment, for their ``--help``.
SOURCE_ENVIRONMENT = (
    "LETSGO_WORKER_DB  the local queue file when --db is not given (default .letsgo/worker.db)",
    "AWS_REGION, AWS_ENDPOINT_URL and the AWS credentials variables, with --sqs",
)

_STATES = ("visible", "delayed", "in_flight", "dead_letter")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--db PATH``, or ``--sqs QUEUE_URL`` with ``--dlq DLQ_URL``: which queue a command looks at."""
    parser.add_argument("--db", metavar="PATH", help="SQLite queue file (default LETSGO_WORKER_DB or .letsgo/worker.db)")
    parser.add_argument("--sqs", metavar="QUEUE_URL", help="an SQS queue instead of the local one")
    parser.add_argument("--dlq", metavar="DLQ_URL",
                        help="with --sqs: its dead-letter queue (default: the one in the queue's RedrivePolicy)")


def _state(text: str) -> str:
    state = text.replace("-", "_")
    if state not in _STATES:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(_STATES)}")
    return state


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more")
    return number


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    queue = commands.add_parser(
        "queue", help="counts and messages of the local queue or an SQS queue",
        **command_help(
            "Look at the queue, local or SQS: how many messages are in each state, and which ones.",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker queue stats",
                "letsgo-worker queue list --state dead_letter --json",
            ),
        ),
    )
    queue_commands = queue.add_subparsers(dest="queue_command", metavar="SUBCOMMAND", required=True)
    stats = queue_commands.add_parser(
        "stats", help="how many messages are visible, in flight, delayed and dead-lettered",
        **command_help(
            "Count the messages of the queue in each state, and the age of the oldest waiting one. "
            "For SQS the counts are its approximate-number attributes.",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker queue stats",
                "letsgo-worker queue stats --json --db /var/lib/letsgo/worker.db",
                "letsgo-worker queue stats --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
            ),
        ),
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    listing = queue_commands.add_parser(
        "list", help="show messages in one state, oldest first",
        **command_help(
            "List the messages in one state (visible, delayed, in_flight or dead_letter), oldest first, "
            "with their receive counts and bodies. Works on a read-only queue file. For SQS only the "
            "dead letters can be looked at, and a look counts as a receive (SQS has no peek).",
            env=SOURCE_ENVIRONMENT,
            examples=(
                "letsgo-worker queue list",
                "letsgo-worker queue list --state delayed --type OrderNew --limit 10",
                "letsgo-worker queue list --state in_flight --json | jq '.[].id'",
            ),
        ),
    )
    listing.add_argument("--state", type=_state, default="visible", help="visible (default), delayed, in_flight or dead_letter")
    listing.add_argument("--type", metavar="T", help="only messages of this type")
    listing.add_argument("--text", help="only messages whose body contains this text")
    listing.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N messages (default 50)")
    listing.add_argument("--offset", type=int, default=0, metavar="N", help="skip the first N (default 0)")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    for sub in (stats, listing):
        add_source_arguments(sub)
    queue.set_defaults(run=lazy("host.cli.queue:cli_queue"))


def open_inspector(args: argparse.Namespace) -> Inspector:
    """The inspector of ``--sqs`` (and ``--dlq``), or of the local queue file; :class:`StartupError` saying why not."""
    from host.errors import QueueError, StartupError

    try:
        if getattr(args, "sqs", None):
            from host.ops.sqs_inspector import SqsInspector

            return SqsInspector(args.sqs, args.dlq)
        if getattr(args, "dlq", None):
            raise StartupError("--dlq goes with --sqs QUEUE_URL")
        from host.config import Settings
        from host.ops.local_inspector import LocalInspector

        return LocalInspector(args.db or Settings.from_env().db_path)
    except QueueError as error:
        raise StartupError(str(error)) from None


def cli_queue(args: argparse.Namespace) -> int:
    """``letsgo-worker queue stats [--json] | list [--state S] [--type T] [--text X] [--limit N] [--json]``."""
    inspector = open_inspector(args)
    if args.queue_command == "stats":
        return _stats(inspector, args.json)
    return _list(inspector, args)


def _stats(inspector: Inspector, as_json: bool) -> int:
    from host.errors import QueueError, StartupError

    try:
        stats = inspector.stats()
    except QueueError as error:
        raise StartupError(str(error)) from None
    if as_json:
        print(json.dumps({"queue": inspector.name, **stats.to_json()}, indent=2))
        return 0
    age = stats.oldest_age_seconds
    rows = [("visible", stats.visible), ("in flight", stats.in_flight), ("delayed", stats.delayed),
            ("dead letter", stats.dead_letter)]
    if sys.stdout.isatty():
        print(f"{inspector.name}{' (approximate counts from SQS)' if stats.approximate else ''}")
    for label, number in rows:
        print(f"{label:<15}{number:>10}")
    print(f"{'oldest waiting':<15}{'-' if age is None else format_age(age):>10}")
    return 0


def format_age(seconds: float) -> str:
    """``seconds`` as a short age: ``42s``, ``3m05s``, ``2h10m``, ``3d04h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _list(inspector: Inspector, args: argparse.Namespace) -> int:
    from host.core.logs import printable
    from host.errors import QueueError, StartupError
    from host.local.schema import iso_time

    if not inspector.can_peek and args.state != "dead_letter":
        raise StartupError(f"{inspector.name} is an SQS queue: only its dead letters can be listed (--state"
            " dead_letter); a look at the live queue would be a receive, counting toward its"
            " maxReceiveCount. `letsgo-worker queue stats --sqs` counts them")
    if inspector.peek_note:
        print(f"note: {inspector.peek_note}", file=sys.stderr)
    try:
        views = inspector.messages(args.state, type=args.type, text=args.text, limit=args.limit, offset=args.offset)
    except QueueError as error:
        raise StartupError(str(error)) from None
    if args.json:
        print(json.dumps([view.to_json() for view in views], indent=2))
        return 0
    if not views and sys.stdout.isatty():
        print(f"no {args.state.replace('_', '-')} messages in {inspector.name}")
    for view in views:
        body = view.body if len(view.body) <= 200 else view.body[:200] + "..."
        print(f"{printable(view.id)}  {printable(view.type or '-')}  received {view.receive_count}"
              f"  sent {iso_time(view.sent_at) or '-'}  {printable(body)}")
    if len(views) == args.limit and sys.stdout.isatty():
        print(f"(the first {args.limit}; --offset {args.offset + args.limit} shows more)")
    return 0
