"""What every command group's module shares: lazy command references and the usage exit status."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

#: Exit status for bad usage or input, as argparse uses.
EXIT_USAGE = 2


def lazy(target: str) -> Callable[[argparse.Namespace], int]:
    """A reference to ``module:function`` run as a command; the module is imported only when run."""

    def run(args: argparse.Namespace) -> int:
        module_name, function_name = target.split(":")
        return getattr(importlib.import_module(module_name), function_name)(args)

    return run


def command_help(description: str, *, env: tuple[str, ...] = (), examples: tuple[str, ...] = ()) -> dict:
    """``add_parser`` keywords for a subcommand's ``--help``: its description, the variables it reads, examples.

    Every subcommand passes them (``tests/test_cli_help.py`` checks), so ``--help``
    always says what a command does, which environment variables it reads and how
    to call it. ``env`` lists the variables with a few words each, e.g.
    ``"LETSGO_WORKER_DB  the queue file"``; none means the command reads none.
    """
    variables = [f"  {line}" for line in env] or ["  none"]
    epilog = [
        "environment variables:", *variables,
        "  (the environment wins over a .env file, or the file LETSGO_WORKER_ENV_FILE names)" if env else "",
        "examples:", *(f"  {example}" for example in examples),
    ]
    import textwrap

    return {
        "description": textwrap.fill(description, 88),
        "epilog": "\n".join(line for line in epilog if line),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
