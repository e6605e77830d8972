"""The entry-point cache: ``letsgo-worker plugins --freeze FILE``, read by a cold start while it is current.

A frozen file must give the very plugins a scan gives, and a file that no longer
matches what is installed (a version changed, a distribution added beside the
frozen ones, a garbled file) must give a scan, never a different worker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host.config import Settings
from host.core import entry_point_cache, plugins
from host.core.worker import Worker
from host.testing import write_distribution

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60


def test_a_frozen_file_holds_what_a_scan_finds(tmp_path):
    path = tmp_path / "entry-points.json"
    frozen = entry_point_cache.freeze(str(path))
    assert frozen == plugins.scan_entry_points()
    assert entry_point_cache.read(str(path)) == frozen
    names = {ep.name for ep in frozen}
    assert {"letsgo_builtins", "example_orders", "letsgo_slack", "letsgo_stripe"} <= names


def test_a_worker_started_from_a_current_file_does_not_scan(tmp_path, monkeypatch):
    path = tmp_path / "entry-points.json"
    entry_point_cache.freeze(str(path))
    scanned = Worker(Settings.from_env({})).start()

    def no_scan():
        raise AssertionError("the installed distributions were scanned despite a current frozen file")

    monkeypatch.setattr(plugins, "scan_entry_points", no_scan)
    cached = Worker(Settings.from_env({}), entry_points_file=str(path)).start()
    try:
        assert [(p.name, p.distribution, p.version, p.builtin) for p in cached.plugins] == [
            (p.name, p.distribution, p.version, p.builtin) for p in scanned.plugins
        ]
        assert [e.type for e in cached.registry] == [e.type for e in scanned.registry]
        assert "letsgo:contact" in cached.registry and "OrderNew" in cached.registry
    finally:
        cached.stop()
        scanned.stop()


def _scans(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = plugins.scan_entry_points

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(plugins, "scan_entry_points", counting)
    return calls


def test_a_changed_version_makes_the_file_stale(tmp_path, monkeypatch, caplog):
    path = tmp_path / "entry-points.json"
    entry_point_cache.freeze(str(path))
    document = json.loads(path.read_text())
    host_dist = next(d for d in document["distributions"] if d["name"] == "letsgo-worker")
    host_dist["version"] = "0.0.1"
    path.write_text(json.dumps(document))
    caplog.set_level(logging.WARNING, "letsgo.plugins")
    assert entry_point_cache.read(str(path)) is None
    assert "letsgo-worker 0.0.1 is now letsgo-worker " in caplog.text
    scans = _scans(monkeypatch)
    worker = Worker(Settings.from_env({}), entry_points_file=str(path)).start()
    try:
        assert scans == [1]
        assert "letsgo:contact" in worker.registry
    finally:
        worker.stop()


def test_a_plugin_installed_after_the_freeze_is_found(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write_distribution(site, "acme-first", "acme_first", _plugin("AcmeFirst"))
    monkeypatch.syspath_prepend(str(site))
    path = site / "entry-points.json"  # beside the distributions, as in the image
    assert "acme_first" in {ep.name for ep in entry_point_cache.freeze(str(path))}
    assert entry_point_cache.read(str(path)) is not None  # writing the file there does not make it stale
    write_distribution(site, "acme-second", "acme_second", _plugin("AcmeSecond"))
    assert entry_point_cache.read(str(path)) is None
    worker = Worker(Settings.from_env({}), entry_points_file=str(path)).start()
    try:
        assert "AcmeFirst" in worker.registry and "AcmeSecond" in worker.registry
    finally:
        worker.stop()


def test_an_uninstalled_distribution_makes_the_file_stale(tmp_path, monkeypatch, caplog):
    site = tmp_path / "site"
    write_distribution(site, "acme-gone", "acme_gone", _plugin("AcmeGone"))
    monkeypatch.syspath_prepend(str(site))
    path = site / "entry-points.json"
    entry_point_cache.freeze(str(path))
    (metadata,) = site.glob("acme_gone-*.dist-info")
    for file in metadata.iterdir():
        file.unlink()
    metadata.rmdir()
    caplog.set_level(logging.WARNING, "letsgo.plugins")
    assert entry_point_cache.read(str(path)) is None
    assert "acme-gone 1.0.0 is no longer installed at " in caplog.text


def _plugin(type_: str) -> str:
    return (
        "from host import hookimpl\n\n@hookimpl\ndef letsgo_register_messages(register):\n"
        f"    register({type_!r}, lambda message, ctx: None)\n"
    )


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"format": 1, "group": "letsgo_worker"}',
                                     '{"format": 99, "group": "letsgo_worker", "entry_points": []}'])
def test_a_garbled_file_is_reported_and_scanning_goes_on(tmp_path, monkeypatch, caplog, content):
    path = tmp_path / "entry-points.json"
    path.write_text(content)
    caplog.set_level(logging.WARNING, "letsgo.plugins")
    scans = _scans(monkeypatch)
    worker = Worker(Settings.from_env({}), entry_points_file=str(path)).start()
    try:
        assert scans == [1] and "letsgo:contact" in worker.registry
        assert f"entry-point cache {path}" in caplog.text
    finally:
        worker.stop()


def test_a_missing_file_means_a_quiet_scan(tmp_path, monkeypatch, caplog):
    scans = _scans(monkeypatch)
    caplog.set_level(logging.DEBUG, "letsgo.plugins")
    worker = Worker(Settings.from_env({}), entry_points_file=str(tmp_path / "absent.json")).start()
    try:
        assert scans == [1] and "letsgo:contact" in worker.registry
        assert "entry-point cache" not in caplog.text
    finally:
        worker.stop()


# -- the command and the Lambda entry point, in processes of their own ---------------

COLD_START = """
import json, sys
import lambda_entry
from host.core import plugins
from host.core.worker import get_worker, use_entry_point_cache

scans = []
scan = plugins.scan_entry_points
plugins.scan_entry_points = lambda: scans.append(1) or scan()
use_entry_point_cache(sys.argv[1])
get_worker()
scanned = bool(scans)
event = {"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "attributes": {},
                      "body": json.dumps({"type": "OrderNew", "payload": {"orderId": "o-1", "customerId": "c-1"}})}]}
print(json.dumps({"scanned": scanned, "response": lambda_entry.handler(event, None)}))
"""


def _cold_start(path: Path) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETSGO_")}
    env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9001"  # JSON log lines on stdout, as in Lambda
    done = subprocess.run([sys.executable, "-c", COLD_START, str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr[-3000:]
    *logs, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(logs)


def test_freeze_then_a_cold_start_reads_the_file_and_a_stale_one_scans(tmp_path):
    path = tmp_path / "entry-points.json"
    done = subprocess.run([sys.executable, "-m", "host.cli", "plugins", "--freeze", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {path}: ")
    assert "example_orders = example_orders (example-orders " in done.stdout

    report, logs = _cold_start(path)
    assert report == {"scanned": False, "response": {"batchItemFailures": []}}
    assert "entry-point cache" not in logs

    document = json.loads(path.read_text())
    orders = next(d for d in document["distributions"] if d["name"] == "example-orders")
    orders["version"] = "0.0.0"
    path.write_text(json.dumps(document))
    report, logs = _cold_start(path)
    assert report == {"scanned": True, "response": {"batchItemFailures": []}}
    (warning,) = [json.loads(line) for line in logs.splitlines() if "entry-point cache" in line]
    assert warning["level"] == "WARNING"
    assert "example-orders 0.0.0 is now example-orders " in warning["message"]


def test_freeze_into_a_folder_that_does_not_exist_is_exit_2(tmp_path):
    path = tmp_path / "no" / "such" / "folder" / "entry-points.json"
    done = subprocess.run([sys.executable, "-m", "host.cli", "plugins", "--freeze", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2
    assert f"cannot freeze the entry points into {path}" in done.stderr
    assert not path.exists()
