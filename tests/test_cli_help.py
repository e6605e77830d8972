"""Every subcommand's ``--help`` says what it does, which environment variables it reads, and how to call it.

The test walks the parser, so a command added later is held to the same rule.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from host.cli import build_parser

# A variable name as the configuration spells them: PORT, AWS_REGION, LETSGO_WORKER_DB...
VARIABLE = re.compile(r"\b(?:PORT|AWS_[A-Z_]+|LETSGO_[A-Z_]+)\b")


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every subcommand under ``parser``, groups and leaves alike."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


SUBCOMMANDS = dict(_subcommands(build_parser()))


def test_the_walk_finds_every_command_group():
    names = {words[0] for words in SUBCOMMANDS}
    assert {"serve", "send", "invoke", "plugins", "types", "schedule", "dlq", "keygen", "token", "new"} <= names
    assert ("dlq", "redrive") in SUBCOMMANDS and ("schedule", "next") in SUBCOMMANDS and ("new", "plugin") in SUBCOMMANDS


@pytest.mark.parametrize("words", sorted(SUBCOMMANDS), ids=" ".join)
def test_help_has_a_description_the_environment_variables_and_examples(words):
    parser = SUBCOMMANDS[words]
    text = parser.format_help()
    assert parser.description and len(parser.description) > 20, f"`{' '.join(words)} --help` has no description"
    header = re.search(r"^environment variables:$", text, re.MULTILINE)  # one heading, command_help's
    assert header, f"`{' '.join(words)} --help` does not say which variables it reads"
    section = text[header.end():].split("examples:", 1)[0]
    assert VARIABLE.search(section) or section.split() == ["none"], section
    assert "examples:" in text, f"`{' '.join(words)} --help` has no examples"
    examples = text.split("examples:", 1)[1]
    assert f"letsgo-worker {' '.join(words)}" in examples, f"the examples of `{' '.join(words)}` do not show it"


def test_help_runs_from_the_command_line():
    done = subprocess.run([sys.executable, "-m", "host.cli", "send", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "LETSGO_LOCAL_QUEUE_URL" in done.stdout and "examples:" in done.stdout
