"""The example tests of docs/plugins.md run as they are, so the documentation cannot drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
#: An example test file: a Python block whose first line names it, ``# test_something.py``.
EXAMPLE = re.compile(r"^```python\n# (test_\w+\.py)\n(.*?)^```$", re.S | re.M)
#: What the examples must cover (issue: a message, a scheduled hook, a named schedule, Stripe, a notification).
COVERED = {
    "run_batch(worker, {\"type\": \"OrderNew\"": "a message",
    "def letsgo_scheduled": "a scheduled hook",
    "name=\"orders-daily-report\"": "a named schedule",
    "def letsgo_stripe_handlers": "a Stripe handler",
    "def letsgo_notify": "a notification",
}


def examples() -> dict[str, str]:
    found = {name: f"# {name}\n{body}" for name, body in EXAMPLE.findall(DOC.read_text())}
    assert len(found) == len(EXAMPLE.findall(DOC.read_text())), "two examples in docs/plugins.md share a file name"
    return found


def test_the_examples_cover_each_kind_of_plugin_code():
    text = "\n".join(examples().values())
    missing = [what for needle, what in COVERED.items() if needle not in text]
    assert not missing, f"docs/plugins.md has no example test for {missing}"


def test_every_example_test_in_docs_plugins_md_passes(tmp_path):
    found = examples()
    assert len(found) >= 5
    for name, source in found.items():
        (tmp_path / name).write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    counts = re.search(r"(\d+) passed", done.stdout)
    expected = sum(len(re.findall(r"^def test_", source, re.M)) for source in found.values())
    assert counts and int(counts.group(1)) == expected, done.stdout[-2000:]
