"""``dlq list`` and ``queue stats|list`` on a queue file, or a folder, that may not be written.

The tests run as root, whom file modes do not stop: the folder is made
immutable with ``chattr +i`` where the file system allows it, else made
read-only by its mode when the tests do not run as root. A test is skipped only
when neither can make the folder read-only, and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from host.core.dispatch import Outcome, Status
from host.local.queue import LocalQueue


def run(cwd, *args: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LETSGO_")}
    return subprocess.run([sys.executable, "-m", "host.cli", *args], cwd=cwd, env=clean,
                          capture_output=True, text=True, timeout=60)


def fill(path) -> None:
    """Two waiting messages and one dead letter."""
    with LocalQueue(path, max_receive_count=1) as queue:
        queue.enqueue_many([("dead-1", '{"type": "OrderNew", "payload": {}}')])
        records = queue.receive(10, 1)
        queue.settle(records, [Outcome(Status.FAILED, "dead-1", "OrderNew", reason="RuntimeError: API down")])
        queue.enqueue_many([("wait-1", '{"type": "OrderNew", "payload": {}}'), ("wait-2", "plain text")])


def make_read_only(folder) -> str:
    """Make ``folder`` read-only; return how, or skip saying why it cannot be done here."""
    if shutil.which("chattr"):
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        if done.returncode == 0:
            return "chattr"
        why = f"chattr +i failed: {done.stderr.strip()}"
    else:
        why = "no chattr on this machine"
    if os.geteuid() != 0:
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
        return "chmod"
    pytest.skip(f"cannot make a folder read-only here: {why}, and the tests run as root, whom a mode does not stop")


def undo(folder, how: str) -> None:
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        os.chmod(folder, stat.S_IRWXU)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder holding a queue file (with its WAL, if any, as a stopped server leaves it), made read-only."""
    folder = tmp_path / "queue"
    folder.mkdir()
    fill(folder / "worker.db")
    how = make_read_only(folder)
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")  # the folder really is read-only
        yield folder
    finally:
        undo(folder, how)


def check_listing(cwd, db) -> None:
    letters = json.loads(run(cwd, "dlq", "list", "--json", "--db", str(db)).stdout)
    assert [letter["id"] for letter in letters] == ["dead-1"]
    assert letters[0]["last_error"] == "RuntimeError: API down"
    text = run(cwd, "dlq", "list", "--db", str(db))
    assert text.returncode == 0 and "dead-1  received 1 time" in text.stdout, text.stderr
    stats = json.loads(run(cwd, "queue", "stats", "--json", "--db", str(db)).stdout)
    assert (stats["visible"], stats["dead_letter"]) == (2, 1)
    listed = json.loads(run(cwd, "queue", "list", "--json", "--db", str(db)).stdout)
    assert [view["id"] for view in listed] == ["wait-1", "wait-2"]


def test_dlq_list_and_queue_commands_read_a_queue_in_a_read_only_folder(read_only_folder, tmp_path):
    check_listing(tmp_path, read_only_folder / "worker.db")
    assert sorted(os.listdir(read_only_folder)) == ["worker.db"]  # nothing was created beside it


def test_writes_to_a_read_only_folder_fail_with_one_line_and_exit_2(read_only_folder, tmp_path):
    result = run(tmp_path, "dlq", "redrive", "--all", "--db", str(read_only_folder / "worker.db"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "letsgo-worker: error:" in result.stderr


def test_dlq_list_reads_a_read_only_file(tmp_path):
    db = tmp_path / "worker.db"
    fill(db)
    how = None
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode == 0:
        how = "chattr"
    elif os.geteuid() != 0:
        os.chmod(db, stat.S_IRUSR)
        how = "chmod"
    else:
        pytest.skip("cannot make a file read-only here: chattr +i failed and the tests run as root")
    try:
        with pytest.raises(OSError):
            open(db, "ab").close()
        check_listing(tmp_path, db)
    finally:
        if how == "chattr":
            subprocess.run(["chattr", "-i", str(db)], check=True)
        else:
            os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)


def test_writes_left_in_the_wal_of_a_killed_server_are_seen_in_a_read_only_folder(tmp_path):
    import sqlite3

    source = tmp_path / "running"
    source.mkdir()
    fill(source / "worker.db")
    # A server killed mid-way leaves writes in the WAL, not yet copied into the database file.
    writer = sqlite3.connect(source / "worker.db", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("INSERT INTO dead_letters (id, body, sent_at, receive_count, dead_lettered_at, reason)"
                       " VALUES ('dead-2', '{}', 0, 5, 0, 'only in the WAL')")
        folder = tmp_path / "copy"
        folder.mkdir()
        for name in ("worker.db", "worker.db-wal"):  # no -shm: it is rebuilt from the WAL by whoever may write
            shutil.copyfile(source / name, folder / name)
        assert (folder / "worker.db-wal").stat().st_size > 0
    finally:
        writer.close()
    how = make_read_only(folder)
    try:
        letters = json.loads(run(tmp_path, "dlq", "list", "--json", "--db", str(folder / "worker.db")).stdout)
        assert [letter["id"] for letter in letters] == ["dead-1", "dead-2"]
    finally:
        undo(folder, how)


def version_1_file(path) -> None:
    import sqlite3

    from test_local_queue import VERSION_1_SCHEMA

    connection = sqlite3.connect(path)
    connection.executescript(VERSION_1_SCHEMA)
    connection.close()


def test_a_file_of_an_older_schema_is_brought_up_to_date_when_it_may_be_written(tmp_path):
    version_1_file(tmp_path / "old.db")
    letters = json.loads(run(tmp_path, "dlq", "list", "--json", "--db", str(tmp_path / "old.db")).stdout)
    assert [letter["id"] for letter in letters] == ["d-1"] and letters[0]["last_traceback"] is None


def test_a_read_only_file_of_an_older_schema_is_one_line_saying_what_to_do(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    version_1_file(folder / "worker.db")
    how = make_read_only(folder)
    try:
        result = run(tmp_path, "dlq", "list", "--db", str(folder / "worker.db"))
    finally:
        undo(folder, how)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has schema 1" in result.stderr and "run `letsgo-worker serve` once on a writable copy" in result.stderr
