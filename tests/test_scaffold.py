"""``letsgo-worker new plugin``: the generated plugin installs with pip and its own tests pass, in a venv of its own."""

from __future__ import annotations

import ast
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from host.cli import main
from host.cli.new import check_name, host_has_schedules, module_name, plugin_files
from isolated_venv import isolated_venv

#: Generous bounds for pip and pytest on a loaded machine; the test never waits longer.
INSTALL_TIMEOUT = 300


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LETSGO_", "PYTEST_"))}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)


def test_a_generated_plugin_installs_and_its_tests_pass(tmp_path, capsys):
    # As a user would: the command line writes the plugin (with or without the schedule, as this host has the hook).
    assert main(["new", "plugin", "acme-billing", "--dir", str(tmp_path / "acme-billing")]) == 0
    # And the schedule's part, generated as it is once the host has letsgo_register_schedules.
    nightly = tmp_path / "acme-nightly"
    for relative, text in plugin_files("acme-nightly", schedules=True).items():
        (nightly / relative).parent.mkdir(parents=True, exist_ok=True)
        (nightly / relative).write_text(text)
    python = isolated_venv(tmp_path / "venv", INSTALL_TIMEOUT) / "python"

    for folder in ("acme-billing", "acme-nightly"):
        installed = _run([str(python), "-m", "pip", "install", "--no-deps", "-e", str(tmp_path / folder)], tmp_path)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = _run([str(tmp_path / "venv" / "bin" / "python"), "-m", "host.cli", "plugins", "--json"], tmp_path)
    assert '"acme_billing"' in listed.stdout and '"acme_nightly"' in listed.stdout, listed.stdout + listed.stderr

    count_here = 4 if host_has_schedules() else 3  # the schedule's test comes with the hook
    for folder, count in (("acme-billing", count_here), ("acme-nightly", 4)):
        tested = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / folder)], tmp_path / folder)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        if count is not None:
            assert f"{count} passed" in tested.stdout, tested.stdout


def test_the_generated_files_are_valid_and_the_entry_point_names_the_module():
    files = plugin_files("Acme.Billing", schedules=True)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["name"] == "Acme.Billing"
    assert project["project"]["entry-points"]["letsgo_worker"] == {"acme_billing": "acme_billing.plugin"}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    plugin = files["acme_billing/plugin.py"]
    for python_file in ("acme_billing/plugin.py", "acme_billing/__init__.py", "tests/test_plugin.py"):
        ast.parse(files[python_file])
    for hook in ("letsgo_register_messages", "letsgo_stripe_handlers", "letsgo_register_schedules"):
        assert f"def {hook}(register)" in plugin
    assert "{{" not in "".join(files.values())
    without = plugin_files("Acme.Billing", schedules=False)
    assert "letsgo_register_schedules" not in without["acme_billing/plugin.py"] + without["tests/test_plugin.py"]


@pytest.mark.parametrize("name", ["", "-acme", "acme-", "acme billing", "acme/billing", "1acme", "9", "class",
                                  "host", "json", "acme!"])
def test_a_name_that_is_no_distribution_or_module_is_refused_with_status_2(name, tmp_path, capsys):
    assert main(["new", "plugin", "--dir", str(tmp_path / "out"), "--", name]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing is written for a refused name"


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["new", "plugin", "acme", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["new", "plugin", "acme", "--dir", str(empty)]) == 0, "an empty folder is fine"
    assert (empty / "acme" / "plugin.py").is_file()


def test_module_names_follow_the_distribution_name():
    assert module_name("Acme-Billing.x") == "acme_billing_x"
    assert check_name("acme-billing") is None
    assert check_name("acme__billing") is None
