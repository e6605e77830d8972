"""The ``letsgo-worker`` command line. Each subcommand's work lives in its concern's module."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from host import Setting, Settings, __version__
from host.errors import StartupError

#: Exit status for bad usage or input, as argparse uses.
EXIT_USAGE = 2


def _command(target: str):
    """A lazy reference to ``module:function``; the module is imported only when run."""

    def run(args: argparse.Namespace) -> int:
        module_name, function_name = target.split(":")
        return getattr(importlib.import_module(module_name), function_name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="letsgo-worker",
        description="Run and inspect a letsgo-worker: SaaS background work on AWS Lambda + SQS and locally.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve", help="run the local runtime: HTTP intake, durable queue, scheduler",
        description="Run the worker locally: POST / stores messages in a durable SQLite queue with SQS semantics, "
                    "delivery hands them in batches to the same code as Lambda, and the scheduler fires ticks.",
        epilog="examples:\n"
               "  letsgo-worker serve                      # 127.0.0.1:3002, .letsgo/worker.db\n"
               "  letsgo-worker serve --port 0 --db /tmp/q.db\n"
               "  letsgo-worker serve --workers 2          # deliver in 2 processes (CPU-bound handlers)\n"
               "  letsgo-worker serve --sqs https://sqs.us-east-1.amazonaws.com/123456789012/my-queue",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, LETSGO_WORKER_HOST)")
    serve.add_argument("--port", help="port to listen on (default 3002, PORT; 0 picks a free one)")
    serve.add_argument("--db", help="SQLite queue file (default .letsgo/worker.db, LETSGO_WORKER_DB)")
    serve.add_argument("--sqs", metavar="QUEUE_URL", help="read a real SQS queue instead of the local one")
    serve.add_argument(
        "--workers", metavar="N",
        help="deliver in N processes of their own, for CPU-bound handlers (default 0: in the server's process; "
             "LETSGO_WORKER_PROCESSES)",
    )
    serve.set_defaults(run=_command("host.local.runtime:cli_serve"))

    send = commands.add_parser("send", help="enqueue one message on the local server (or SQS)")
    send.add_argument("type", help="message type, e.g. OrderNew")
    send.add_argument("payload", nargs="?", help="payload as JSON (default null)")
    send.add_argument("--file", help="read the payload JSON from this file")
    send.add_argument("--delay", type=float, default=0, help="delay in seconds, 0-900 (fractions are kept locally)")
    send.add_argument("--url", help="local server URL (default LETSGO_LOCAL_QUEUE_URL or http://127.0.0.1:3002)")
    send.add_argument("--sqs", metavar="QUEUE_URL", help="send to this SQS queue instead of the local server (a body over "
                      "256 KiB goes through the S3 bucket LETSGO_WORKER_LARGE_MESSAGE_BUCKET)")
    send.set_defaults(run=_command("host.services.enqueue:cli_send"))

    invoke = commands.add_parser("invoke", help="run lambda_entry.handler on an event file and print its JSON result")
    invoke.add_argument("event", metavar="EVENT.json", help="event file ('-' for stdin)")
    invoke.add_argument("--timeout-ms", type=int, default=900_000, help="the simulated function timeout")
    invoke.set_defaults(run=_command("host.aws.invoke:cli_invoke"))

    plugins = commands.add_parser("plugins", help="list loaded plugins")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.add_argument(
        "--freeze", metavar="FILE", nargs="?", const="",
        help="write the installed plugins' entry points to FILE for the cold starts of an image (default: "
        "beside lambda_entry.py, where the Lambda entry point reads them; see the Dockerfile)",
    )
    plugins.set_defaults(run=cli_plugins)

    types = commands.add_parser("types", help="list registered message types")
    types.add_argument("--json", action="store_true", help="print JSON with each payload's JSON Schema")
    types.set_defaults(run=cli_types)

    schedule = commands.add_parser("schedule", help="schedule expressions")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", metavar="SUBCOMMAND", required=True)
    next_ = schedule_commands.add_parser("next", help="print the next fire instants of an expression, in UTC")
    next_.add_argument("expression", metavar="EXPR", help="rate(...), cron(...) or at(...)")
    next_.add_argument("--tz", default=None, help="IANA time zone (default LETSGO_WORKER_SCHEDULE_TIMEZONE or UTC)")
    next_.add_argument("--after", help="ISO-8601 instant to start after (for rate(): the schedule's start)")
    next_.add_argument("--count", type=int, default=5, help="how many instants (default 5)")
    next_.add_argument("--json", action="store_true", help="print a JSON list")
    next_.set_defaults(run=_command("host.cli.schedule:cli_schedule_next"))

    dlq = commands.add_parser("dlq", help="inspect the local dead-letter queue")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)
    dlq_list = dlq_commands.add_parser("list", help="show dead-lettered messages with their reasons")
    dlq_list.add_argument("--json", action="store_true", help="print JSON")
    redrive = dlq_commands.add_parser("redrive", help="move messages back to the queue")
    redrive.add_argument("ids", nargs="*", metavar="ID", help="message ids")
    redrive.add_argument("--all", action="store_true", help="every dead-lettered message")
    purge = dlq_commands.add_parser("purge", help="delete every dead-lettered message")
    for sub in (dlq_list, redrive, purge):
        sub.add_argument("--db", help="SQLite queue file (default .letsgo/worker.db)")
    dlq.set_defaults(run=_command("host.cli.dlq:cli_dlq"))

    keygen = commands.add_parser("keygen", help="write a new RSA key pair for the worker's access tokens")
    keygen.add_argument("--out", default=".letsgo/worker-key.pem", help="private key file to write")
    keygen.add_argument("--force", action="store_true", help="overwrite an existing file")
    keygen.set_defaults(run=_command("host.services.api:cli_keygen"))

    token = commands.add_parser("token", help="print an access token for the app's API")
    token.set_defaults(run=_command("host.services.api:cli_token"))
    return parser


def _setup_logging() -> None:
    """Log to stderr at ``LETSGO_WORKER_LOG_LEVEL``; a bad level is a :class:`ConfigError` like any bad variable."""
    from host.core.logs import configure_text_logging

    configure_text_logging(Settings.from_env().log_level)


def _started_worker():
    from host.core.worker import get_worker

    from host.core.plugins import report_problems

    worker = get_worker()
    report_problems(worker.problems)
    return worker


def cli_plugins(args: argparse.Namespace) -> int:
    """``letsgo-worker plugins [--json] [--freeze FILE]``: name, distribution, version, hooks, message types, settings.

    A plugin that failed to load is listed too, with ``loaded`` false and its
    problems, so scripts reading the JSON see it as well as people reading stderr.
    Each setting a plugin declared is shown with its value as configured; a
    secret's only as ``<secret>``. ``--freeze FILE`` writes the entry-point
    cache instead (:mod:`host.core.entry_point_cache`), loading no plugin.
    """
    if args.freeze is not None:
        return _freeze(args.freeze)
    worker = _started_worker()
    problems: dict[str, list[str]] = {}
    for problem in worker.problems:
        problems.setdefault(problem.plugin, []).append(problem.message)
    rows = []
    for info in worker.plugins:
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "loaded": True,
                "hooks": worker.plugin_hooks(info),
                "types": [entry.type for entry in worker.registry if entry.plugin == info.name],
                "settings": [_setting_row(worker.settings, setting) for setting in worker.plugin_settings.get(info.name, [])],
                "problems": problems.pop(info.name, []),
            }
        )
    failed = {problem.plugin: problem.distribution for problem in worker.problems}
    for name, messages in problems.items():
        rows.append(
            {
                "name": name, "distribution": failed[name], "version": None, "builtin": False,
                "loaded": False, "hooks": [], "types": [], "settings": [], "problems": messages,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins loaded")
    for row in rows:
        state = "" if row["loaded"] else " NOT LOADED"
        print(f"{row['name']} ({row['distribution'] or 'in-process'} {row['version'] or ''})".replace(" )", ")") + state)
        print(f"  hooks: {', '.join(row['hooks']) or '-'}")
        print(f"  types: {', '.join(row['types']) or '-'}")
        settings = [f"{s['variable']}={s['value']}" if s["value"] is not None else f"{s['variable']} (unset)" for s in row["settings"]]
        print(f"  settings: {', '.join(settings) or '-'}")
    return 0


def _setting_row(settings: Settings, setting: Setting) -> dict[str, Any]:
    """One declared setting for the listing: the value as configured, never a secret's."""
    return {
        "variable": setting.variable,
        "value": settings.display(setting),
        "default": None if setting.secret else setting.default,
        "secret": setting.secret,
        "description": setting.description,
    }


def _freeze(path: str) -> int:
    from host.core.entry_point_cache import freeze

    if not path:
        import lambda_entry

        path = lambda_entry.ENTRY_POINTS_FILE
    try:
        frozen = freeze(path)
    except (OSError, ValueError) as error:
        print(f"letsgo-worker: cannot freeze the entry points into {path}: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {len(frozen)} entry point(s)")
    for ep in frozen:
        print(f"  {ep.name} = {ep.value} ({ep.distribution or 'no distribution'} {ep.version or ''})".replace(" )", ")"))
    return 0


def cli_types(args: argparse.Namespace) -> int:
    """``letsgo-worker types [--json]``: every registered type with its plugin and payload schema."""
    worker = _started_worker()
    rows = [
        {
            "type": entry.type,
            "plugin": entry.plugin,
            "distribution": entry.distribution,
            "description": entry.description,
            "schema": entry.payload_schema(),
        }
        for entry in worker.registry
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no message types registered")
    width = max((len(row["type"]) for row in rows), default=0)
    for row in rows:
        print(f"{row['type']:<{width}}  {row['plugin']:<16}  {row['description']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from host.config import load_dotenv_file

    # Every command sees the same configuration: .env first, then the environment wins.
    load_dotenv_file()
    try:
        _setup_logging()
        return int(args.run(args) or 0)
    except StartupError as error:
        print(f"letsgo-worker: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`letsgo-worker dlq list | head`): end quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
