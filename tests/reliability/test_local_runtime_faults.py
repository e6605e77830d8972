"""Faults of the local runtime found by trying it as a hostile user would, each against a real ``serve``.

- the queue file deleted while serving: 503 and /healthz says so, never a 201 that a restart loses;
- another process holding SQLite's lock: ``POST /`` answers 503 with Retry-After within seconds;
- the serve lock reached through a symlink to the same file;
- a lone surrogate in a record's ``messageId``: 400, the client's mistake;
- a plugin route given a body that is not JSON: 400;
- control characters in a message id: escaped by ``dlq list``;
- an empty ``LETSGO_WORKER_HOST``: 127.0.0.1, not every interface;
- a read-only queue file or folder: one line naming it, exit 2, nothing lost.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import time

import pytest

from .reliability_kit import (
    Server,
    dead_letters,
    drained,
    health,
    install_ledger_plugin,
    post,
    run_cli,
    server_env,
    stored_count,
    wait_until,
)


def message(n: int) -> dict:
    return {"type": "rel.count", "payload": {"n": n}}


def test_a_queue_file_deleted_while_serving_is_noticed_and_nothing_more_is_accepted(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    db = tmp_path / "queue.db"
    server = Server(db, tmp_path / "server.log", server_env(plugin_root, REL_LEDGER=str(tmp_path / "ledger"))).start()
    try:
        assert post(server.url, message(1))[0] == 201
        for path in (db, tmp_path / "queue.db-wal", tmp_path / "queue.db-shm"):
            if path.exists():
                os.remove(path)  # what `make clean` does during `make run`
        status, body, headers = post(server.url, message(2))
        assert status == 503 and "deleted or replaced" in body["error"], body
        assert headers.get("Retry-After") == "1"
        status, body, _ = post(server.url + "/healthz", b"", method="GET")
        assert status == 503 and body["status"] == "error" and "deleted or replaced" in body["error"], body
    finally:
        server.stop()
    assert "deleted or replaced while the server ran" in server.log()


def test_post_answers_503_soon_while_another_process_holds_the_database_lock(tmp_path):
    db = tmp_path / "queue.db"
    server = Server(db, tmp_path / "server.log", server_env()).start()
    holder = sqlite3.connect(db, isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # a backup tool, or sqlite3 in a terminal
        started = time.monotonic()
        status, body, headers = post(server.url, {"type": "letsgo:contact", "payload": {}}, timeout=60)
        waited = time.monotonic() - started
        assert status == 503 and "lock" in body["error"], body
        assert headers.get("Retry-After") == "1"
        assert waited < 15, f"POST / waited {waited:.1f}s for the lock"
        holder.execute("ROLLBACK")
        assert post(server.url, {"type": "letsgo:contact", "payload": {}})[0] == 201
    finally:
        holder.close()
        server.stop()


def test_the_serve_lock_is_not_bypassed_through_a_symlink(tmp_path):
    db = tmp_path / "queue.db"
    first = Server(db, tmp_path / "first.log", server_env()).start()
    try:
        os.symlink(db, tmp_path / "other-name.db")
        result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "other-name.db"), env=server_env(), timeout=60)
        assert result.returncode == 2, result.stderr
        assert "another `letsgo-worker serve`" in result.stderr
    finally:
        first.stop()


def test_a_message_id_that_is_not_valid_unicode_is_the_clients_mistake(tmp_path):
    db = tmp_path / "queue.db"
    server = Server(db, tmp_path / "server.log", server_env()).start()
    try:
        before = stored_count(str(db))
        # \ud800 is a lone surrogate: valid JSON text, not valid Unicode.
        body = '{"Records": [{"messageId": "\\ud800", "body": "{\\"type\\": \\"letsgo:contact\\", \\"payload\\": {}}"}]}'
        status, reply, _ = post(server.url, body)
        assert status == 400 and "messageId is not valid Unicode" in reply["error"], reply
        assert stored_count(str(db)) == before
    finally:
        server.stop()


def test_control_characters_in_a_message_id_are_escaped_by_dlq_list(tmp_path):
    db = tmp_path / "queue.db"
    # Text lines, as on a terminal (the log is a file, which gets JSON, where json.dumps escapes them).
    server = Server(db, tmp_path / "server.log", server_env(LETSGO_WORKER_LOG_FORMAT="text")).start()
    forged = "m-1\n2026-12-01 INFO forged line \x1b[31mred"
    try:
        record = {"messageId": forged, "body": json.dumps({"type": "no:such:type", "payload": {}})}
        assert post(server.url, {"Records": [record]})[0] == 201
        wait_until(lambda: dead_letters(str(db)), 60, message="the unknown type to be dead-lettered")
    finally:
        server.stop()
    log = server.log()
    assert "\x1b" not in log and "\n2026-12-01 INFO forged line" not in log  # the rejection's log line
    assert "m-1\\n2026-12-01 INFO forged line \\x1b[31mred" in log
    listing = run_cli("dlq", "list", "--db", str(db), env=server_env())
    assert listing.returncode == 0, listing.stderr
    assert "\x1b" not in listing.stdout and "\nforged line" not in listing.stdout
    assert "m-1\\n2026-12-01 INFO forged line \\x1b[31mred" in listing.stdout
    as_json = run_cli("dlq", "list", "--json", "--db", str(db), env=server_env())
    assert json.loads(as_json.stdout)[0]["id"] == forged  # the data itself is kept as sent


def test_an_empty_bind_address_means_loopback_not_every_interface(tmp_path):
    server = Server(tmp_path / "queue.db", tmp_path / "server.log", server_env(LETSGO_WORKER_HOST="")).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert health(server.url)["status"] == "ok"
        assert "beyond this machine" not in server.log()
    finally:
        server.stop()


def test_sigterm_with_a_handler_still_running_keeps_the_lock_until_the_process_is_gone(tmp_path):
    import signal

    from .reliability_kit import read_ledger

    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    db = tmp_path / "queue.db"
    # rel.hang is a def handler that blocks for REL_HANG_SECONDS: longer than the 10 s grace period.
    env = server_env(plugin_root, REL_LEDGER=ledger, REL_HANG_SECONDS="13", LETSGO_WORKER_VISIBILITY_TIMEOUT="600",
                     LETSGO_WORKER_DRAIN_SECONDS="10")
    first = Server(db, tmp_path / "first.log", env).start()
    assert post(first.url, {"type": "rel.hang", "payload": {"n": 7}})[0] == 201
    wait_until(lambda: health(first.url)["batches_in_flight"] == 1, 60, message="the slow handler to run")
    os.kill(first.process.pid, signal.SIGTERM)
    # While the first server gives its handler the grace period, a second one must not start.
    refused = run_cli("serve", "--port", "0", "--db", str(db), env=env, timeout=60)
    assert refused.returncode == 2 and "another `letsgo-worker serve`" in refused.stderr, refused.stderr
    assert first.process.wait(60) == 1
    assert "exiting with 1 batch(es) still running" in first.log()
    # The process ended with its handler, not 13 s later when the handler would have returned.
    assert [(kind, n, count) for kind, n, _, count in read_ledger(ledger)] == [("hang", 7, 1)]
    second = Server(db, tmp_path / "second.log", env).start()
    try:
        wait_until(lambda: len(read_ledger(ledger)) == 2, 60, message="the message to run again in the second server")
        wait_until(lambda: drained(second.url), 60, message="the second run to finish")
    finally:
        second.stop()
    assert [(kind, n, count) for kind, n, _, count in read_ledger(ledger)] == [("hang", 7, 1), ("hang", 7, 2)]


def test_a_damaged_queue_file_stops_start_up_with_one_line_saying_what_to_do(tmp_path):
    db = tmp_path / "queue.db"
    server = Server(db, tmp_path / "server.log", server_env()).start()
    try:
        for n in range(200):
            assert post(server.url, {"type": "no:such:type", "payload": {"n": n, "pad": "x" * 3000}})[0] == 201
    finally:
        server.stop()
    size = db.stat().st_size
    with open(db, "r+b") as file:  # a bad sector in the middle of the file
        file.seek(size // 2)
        file.write(b"\xff" * 8192)
    result = run_cli("serve", "--port", "0", "--db", str(db), env=server_env(), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is damaged" in result.stderr and ".recover" in result.stderr
    assert "Traceback" not in result.stderr and "stopped" not in result.stderr


def test_a_lock_path_that_cannot_be_written_stops_start_up_with_one_line(tmp_path):
    (tmp_path / "queue.db.lock").mkdir()  # where the serve lock file goes
    result = run_cli("serve", "--port", "0", "--db", str(tmp_path / "queue.db"), env=server_env(), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "cannot create the serve lock" in result.stderr and "Traceback" not in result.stderr


POISON_PLUGIN = '''
import os, time
from host import hookimpl

def _write(line):
    fd = os.open(os.environ["REL_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)

def poison(message, ctx):
    _write(f"poison {ctx.receive_count}")
    time.sleep(0.3)  # let its batch-mates start, as they would beside it
    os._exit(1)  # takes the whole process down

def healthy(message, ctx):
    time.sleep(0.6)  # still running when the poison strikes, if they share a batch
    _write(f"ok {message.payload['n']} {ctx.receive_count}")

@hookimpl
def letsgo_register_messages(register):
    register("rel.poison", poison)
    register("rel.healthy", healthy)
'''


def test_a_message_that_crashes_its_process_is_then_tried_alone_and_cannot_take_healthy_ones_down(tmp_path):
    from .reliability_kit import write_distribution

    plugin_root = tmp_path / "plugins"
    write_distribution(plugin_root, "rel-poison", {"relpoison": "relpoison"}, {"relpoison": POISON_PLUGIN})
    ledger = tmp_path / "ledger"
    db = tmp_path / "queue.db"
    env = server_env(str(plugin_root), REL_LEDGER=str(ledger), LETSGO_WORKER_PLUGINS="relpoison",
                     LETSGO_WORKER_MAX_RECEIVE_COUNT="3", LETSGO_WORKER_BATCH_SIZE="5",
                     LETSGO_WORKER_BATCH_WINDOW_SECONDS="0.5")
    records = [{"body": json.dumps({"type": "rel.poison", "payload": {}})}]
    records += [{"body": json.dumps({"type": "rel.healthy", "payload": {"n": n}})} for n in range(4)]
    server = Server(db, tmp_path / "server-0.log", env).start()
    assert post(server.url, {"Records": records})[0] == 201  # one batch: the poison and four healthy messages

    def crashed_or_drained() -> bool:
        if server.process.poll() is not None:
            return True
        try:
            return drained(server.url)
        except (OSError, http.client.HTTPException):  # it is dying while answering: wait until it is gone
            server.process.wait(30)
            return True

    restarts = 0
    while True:  # each crash ends the server; start it again on the same file, as a supervisor would
        wait_until(crashed_or_drained, 60, interval=0.1, message="the server to crash or the queue to drain")
        if server.process.poll() is None:
            break
        restarts += 1
        assert restarts <= 6, "the server kept crashing"
        server = Server(db, tmp_path / f"server-{restarts}.log", env).start()
    server.stop()
    assert restarts == 3  # the first crash, then once per retry of the poison alone, up to its 3 receives
    lines = ledger.read_text().split("\n")
    healthy = sorted(line for line in lines if line.startswith("ok "))
    assert [line.split()[1] for line in healthy] == ["0", "1", "2", "3"]  # each healthy message handled once
    letters = dead_letters(str(db))
    assert [json.loads(letter["body"])["type"] for letter in letters] == ["rel.poison"]
    assert "without completing" in letters[0]["reason"]


def _make_read_only(path) -> bool:
    """Make ``path`` read-only even for root (the immutable flag), else by mode bits; False if neither holds."""
    import shutil
    import subprocess

    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return True
    os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
    return not os.access(path, os.W_OK)


def _make_writable(path) -> None:
    import shutil
    import subprocess

    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_a_read_only_queue_stops_start_up_with_one_line_saying_what_is_read_only(tmp_path, read_only):
    folder = tmp_path / "data"
    db = folder / "queue.db"
    server = Server(db, tmp_path / "server.log", server_env()).start()
    try:
        assert post(server.url, message(1))[0] == 201
    finally:
        server.stop()
    target = folder if read_only == "folder" else db
    if not _make_read_only(target):
        pytest.skip("this machine can make nothing read-only for this user (no chattr, and mode bits do not bind)")
    try:
        result = run_cli("serve", "--port", "0", "--db", str(db), env=server_env(), timeout=60)
    finally:
        _make_writable(target)
    assert result.returncode == 2, result.stderr
    assert f"the {read_only} {target} is read-only" in result.stderr
    assert "Traceback" not in result.stderr and "stopped" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert stored_count(str(db)) == 1  # nothing lost: the message is still there for a writable start
