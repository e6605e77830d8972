"""Shared fixtures of the test suite (the plugin-author fixtures come from host.testing)."""

from __future__ import annotations

import sys

import pytest

from host.testing import write_distribution


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a plugin distribution for this test only, found by real entry-point discovery.

    ``install_plugin(distribution, module, source, entry_point=None)`` writes the
    module and its ``.dist-info`` under a temporary folder put on ``sys.path``.
    """
    site = tmp_path / "site-packages"
    installed: list[str] = []
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(distribution: str, module: str, source: str, entry_point: str | None = None) -> None:
        write_distribution(site, distribution, module, source, entry_point=entry_point)
        installed.append(module)

    yield install
    for module in installed:
        sys.modules.pop(module, None)


@pytest.fixture
def slack():
    """A stand-in Slack incoming webhook on 127.0.0.1 (``slack.url``, ``slack.texts``...)."""
    from letsgo_slack.testing import FakeSlackWebhook

    with FakeSlackWebhook() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_process_worker():
    """Each test starts without a process-wide worker left over by another test."""
    from host.core.worker import reset_worker

    reset_worker()
    yield
    reset_worker()
