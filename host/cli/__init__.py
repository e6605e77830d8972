"""The ``letsgo-worker`` command line. Each subcommand's work lives in its concern's module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from host import Settings, __version__
from host.cli.common import EXIT_USAGE
from host.errors import StartupError

#: The command groups, each a module of this package with ``add_commands(commands)``, in ``--help`` order.
COMMAND_GROUPS = ("serve", "send", "invoke", "plugins", "schedule", "schedules", "queue", "dlq", "keys", "dashboard", "new")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="letsgo-worker",
        description="Run and inspect a letsgo-worker: SaaS background work on AWS Lambda + SQS and locally.",
        epilog="Each command's --help says what it does, the environment variables it reads and examples.\n"
               "examples:\n  letsgo-worker serve\n  letsgo-worker send OrderNew '{\"orderId\": \"o-1\", \"customerId\": \"c-1\"}'\n"
               "  letsgo-worker new plugin acme-billing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        importlib.import_module(f"host.cli.{group}").add_commands(commands)
    return parser


def _setup_logging() -> None:
    """Log to stderr at ``LETSGO_WORKER_LOG_LEVEL`` in ``LETSGO_WORKER_LOG_FORMAT``; a bad value is a :class:`ConfigError`."""
    from host.core.logs import configure_cli_logging

    settings = Settings.from_env()
    configure_cli_logging(settings.log_level, settings.log_format)


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
