"""``letsgo-worker new plugin NAME``: write a pip-installable plugin, ready for ``pip install -e`` and ``pytest``."""

from __future__ import annotations

import argparse
import keyword
import os
import re
import sys
from pathlib import Path

from host.cli.common import EXIT_USAGE, command_help

# PEP 508's distribution name: letters and digits, with ".", "_" or "-" inside.
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
#: Import names a plugin must not take: it would shadow the host, its plugins or the test runner.
_TAKEN_MODULES = frozenset({"host", "letsgo_worker", "letsgo_stripe", "letsgo_slack", "lambda_entry", "server",
                            "pytest", "pydantic", "pluggy", "tests", "test"})


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add this group's subcommands to the ``letsgo-worker`` parser."""
    new = commands.add_parser(
        "new", help="generate a new project from a template",
        **command_help(
            "Generate a new project from a template: `new plugin NAME` writes a pip-installable plugin.",
            examples=("letsgo-worker new plugin acme-billing",),
        ),
    )
    kinds = new.add_subparsers(dest="new_command", metavar="KIND", required=True)
    plugin = kinds.add_parser(
        "plugin", help="write a plugin: pyproject.toml, a typed message, a Stripe handler, a schedule, tests, README",
        **command_help(
            "Write a pip-installable letsgo-worker plugin into DIR (default ./NAME): a pyproject.toml "
            "with the letsgo_worker entry point, a module with a typed message and its handler, a "
            "Stripe handler and a named schedule (when this host has the hook), tests that use "
            "host.testing, and a README. `pip install -e DIR && pytest DIR` passes right away. "
            "NAME is the distribution name; its import name is NAME with '-' and '.' as '_'.",
            examples=("letsgo-worker new plugin acme-billing",
                      "letsgo-worker new plugin acme-billing --dir plugins/acme_billing && "
                      "pip install -e plugins/acme_billing"),
        ),
    )
    plugin.add_argument("name", metavar="NAME", help="distribution name, e.g. acme-billing (module acme_billing)")
    plugin.add_argument("--dir", help="folder to write (default ./NAME); must be missing or empty")
    plugin.set_defaults(run=cli_new_plugin)


def module_name(distribution: str) -> str:
    """The import name of a distribution name: ``Acme-Billing.x`` -> ``acme_billing_x``."""
    return re.sub(r"[-_.]+", "_", distribution).lower()


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name a new plugin (distribution and module), or None when it can."""
    if not _DISTRIBUTION_NAME.fullmatch(name):
        return (f"{name!r} is not a valid distribution name: use letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    module = module_name(name)
    if not module.isidentifier() or module[0].isdigit():
        return f"{name!r} gives the module name {module!r}, which is not a Python identifier: start with a letter"
    if keyword.iskeyword(module) or keyword.issoftkeyword(module):
        return f"{name!r} gives the module name {module!r}, a Python keyword: choose another name"
    if module in _TAKEN_MODULES or module in sys.stdlib_module_names:
        return f"{name!r} gives the module name {module!r}, which would shadow an existing module: choose another name"
    return None


def _camel(module: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in module.split("_") if part)


def plugin_files(name: str, *, schedules: bool) -> dict[str, str]:
    """The new plugin's files, path (relative to its folder) -> text, for distribution ``name``.

    ``schedules`` keeps the named schedule and its test: pass whether the host
    has the ``letsgo_register_schedules`` hook.
    """
    from host.cli.plugin_template import FILES, render

    module = module_name(name)
    camel = _camel(module)
    values = {
        "distribution": name, "module": module, "type": f"{camel}Hello", "model": f"{camel}Hello",
        "snake": f"{module}_hello",
        # Schedule names are one namespace for every plugin (and EventBridge Scheduler's, at most 64 characters).
        "schedule": f"{module[:56].replace('_', '-')}-nightly",
    }
    sections = {"schedules": schedules}
    return {render(path, values, sections): render(text, values, sections) for path, text in FILES.items()}


def host_has_schedules() -> bool:
    """Whether this host defines the ``letsgo_register_schedules`` hook (named schedules per plugin)."""
    from host import hookspecs

    return hasattr(hookspecs, "letsgo_register_schedules")


def cli_new_plugin(args: argparse.Namespace) -> int:
    """``letsgo-worker new plugin NAME [--dir DIR]``: write the plugin; exit 2 for a bad name or a non-empty DIR."""
    problem = check_name(args.name)
    if problem:
        print(f"letsgo-worker new plugin: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    target = Path(args.dir or args.name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"letsgo-worker new plugin: error: {target} already exists and is not an empty folder; "
              "choose another --dir", file=sys.stderr)
        return EXIT_USAGE
    files = plugin_files(args.name, schedules=host_has_schedules())
    try:
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"letsgo-worker new plugin: error: cannot write {target}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} files to {target}{os.sep}")
    if sys.stdout.isatty():
        print(f"next: pip install -e {target} && pytest {target}")
    return 0
