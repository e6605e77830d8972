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
