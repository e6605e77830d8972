"""Documentation is enforced: every hook is documented with its exact signature and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from host import hookspecs

ROOT = Path(__file__).parent.parent


def hook_specs():
    modules = [hookspecs]
    try:
        from letsgo_stripe import hookspecs as stripe_hookspecs
    except ImportError:  # the Stripe plugin brings its own hooks only when installed
        stripe_hookspecs = None
    if stripe_hookspecs is not None:
        modules.append(stripe_hookspecs)
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("letsgo_"):
                yield name, function


HOOKS = sorted(hook_specs())


def test_there_are_hooks():
    assert {"letsgo_register_messages", "letsgo_scheduled", "letsgo_notify"} <= {name for name, _ in HOOKS}


@pytest.mark.parametrize(("name", "function"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_has_a_docstring_with_every_parameter(name, function):
    doc = inspect.getdoc(function) or ""
    assert len(doc.splitlines()) >= 3, f"{name} needs a real docstring"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"{name}'s docstring must describe {parameter!r}"


@pytest.mark.parametrize(("name", "function"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_is_documented_with_its_signature(name, function):
    signature = f"{name}({', '.join(inspect.signature(function).parameters)})"
    docs = (ROOT / "docs" / "plugins.md").read_text() + (ROOT / "README.md").read_text()
    for extra in (ROOT / "plugins").glob("*/README.md"):
        docs += extra.read_text()
    assert f"`{signature}`" in docs, f"document {signature} in docs/plugins.md"


@pytest.mark.parametrize(("name", "function"), HOOKS, ids=[name for name, _ in HOOKS])
def test_hook_is_exercised_by_a_test(name, function):
    tests = [p for p in ROOT.glob("tests/**/*.py") if p.name != "test_docs.py"]
    tests += list(ROOT.glob("plugins/*/tests/**/*.py"))
    assert any(name in path.read_text() for path in tests), f"no test implements or calls {name}"


def plugin_settings():
    """Every setting the plugins in this repository declare, through their ``letsgo_register_settings``."""
    import importlib

    declared = []
    for project in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        module = importlib.import_module(project.parent.name)
        hook = getattr(module, "letsgo_register_settings", None)
        if hook is not None:
            hook(register=declared.append)
    return declared


def test_every_plugin_setting_is_documented_in_the_readme():
    declared = plugin_settings()
    assert {"LETSGO_SLACK_URL", "LETSGO_STRIPE_TEST_WEBHOOK_KEY"} <= {s.variable for s in declared}
    readme = (ROOT / "README.md").read_text()
    missing = [s.variable for s in declared if f"| `{s.variable}` |" not in readme]
    assert missing == []
