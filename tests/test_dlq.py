"""``letsgo-worker dlq list | redrive | purge`` as a subprocess, on a queue file prepared in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from host.core.dispatch import Outcome, Status
from host.local.queue import LocalQueue


def run(cwd, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LETSGO_")}
    return subprocess.run(
        [sys.executable, "-m", "host.cli", "dlq", *args], cwd=cwd, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def db(tmp_path):
    """A queue file with two dead letters: one rejected, one that failed the maximum number of times."""
    path = tmp_path / "worker.db"
    with LocalQueue(path, max_receive_count=2, backoff_base=0, backoff_max=0) as queue:
        queue.enqueue_many([("rejected-1", "Test message."), ("failed-1", '{"type": "OrderNew", "payload": {"orderId": "1"}}')])
        for attempt in (1, 2):
            records = queue.receive(10, 1)
            outcomes = []
            for record in records:
                if record["messageId"] == "rejected-1":
                    outcomes.append(Outcome(Status.REJECTED, "rejected-1", reason="body is not valid JSON: Expecting value"))
                else:
                    outcomes.append(Outcome(Status.FAILED, "failed-1", reason=f"RuntimeError: API down ({attempt})"))
            queue.settle(records, outcomes)
    return path


def test_list_shows_each_message_with_body_receive_count_last_error_and_reason(db, tmp_path):
    result = run(tmp_path, "list", "--db", str(db))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "rejected-1  received 1 time" in text
    assert "failed-1  received 2 times" in text
    assert "body is not valid JSON: Expecting value" in text and "RuntimeError: API down (2)" in text
    assert "Test message." in text and '"orderId": "1"' in text
    assert "rejected" in text and "LETSGO_WORKER_MAX_RECEIVE_COUNT=2" in text
    assert "2 dead-lettered messages" in text


def test_list_shows_a_failures_traceback_indented(tmp_path):
    path = tmp_path / "worker.db"
    try:
        raise RuntimeError("API down")
    except RuntimeError as error:
        failure = error
    with LocalQueue(path, max_receive_count=1) as queue:
        queue.enqueue_many([("failed-1", '{"type": "OrderNew", "payload": {}}')])
        records = queue.receive(10, 1)
        queue.settle(records, [Outcome(Status.FAILED, "failed-1", "OrderNew", error=failure)])
    text = run(tmp_path, "list", "--db", str(path)).stdout
    assert "  traceback:  Traceback (most recent call last):" in text
    assert '              File "' in text and 'raise RuntimeError("API down")' in text
    assert "              RuntimeError: API down" in text


def test_list_json(db, tmp_path):
    result = run(tmp_path, "list", "--json", "--db", str(db))
    letters = {letter["id"]: letter for letter in json.loads(result.stdout)}
    assert letters["failed-1"]["receive_count"] == 2
    assert letters["failed-1"]["last_error"] == "RuntimeError: API down (2)"
    assert letters["rejected-1"]["body"] == "Test message."
    assert letters["rejected-1"]["reason"].startswith("rejected")
    assert letters["rejected-1"]["dead_lettered_at"].endswith("Z")


def test_the_database_defaults_to_letsgo_worker_db_then_dot_letsgo(db, tmp_path):
    by_variable = run(tmp_path, "list", "--json", env={"LETSGO_WORKER_DB": str(db)})
    assert len(json.loads(by_variable.stdout)) == 2
    (tmp_path / ".letsgo").mkdir()
    db.rename(tmp_path / ".letsgo" / "worker.db")
    by_default = run(tmp_path, "list", "--json")
    assert len(json.loads(by_default.stdout)) == 2


def test_redrive_by_id_then_all(db, tmp_path):
    result = run(tmp_path, "redrive", "failed-1", "--db", str(db))
    assert result.returncode == 0 and "redrove 1 message to the queue" in result.stdout
    with LocalQueue(db) as queue:
        [record] = queue.receive(10, 0)
        assert record["messageId"] == "failed-1" and record["attributes"]["ApproximateReceiveCount"] == "1"
        assert [letter.id for letter in queue.dead_letters()] == ["rejected-1"]
    result = run(tmp_path, "redrive", "--all", "--db", str(db))
    assert "redrove 1 message" in result.stdout
    assert json.loads(run(tmp_path, "list", "--json", "--db", str(db)).stdout) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["redrive", "nope", "failed-1"], "not in the dead-letter queue: nope"),
        (["redrive"], "name the message ids to redrive, or pass --all"),
        (["redrive", "failed-1", "--all"], "not both"),
    ],
)
def test_redrive_mistakes_exit_2_and_move_nothing(db, tmp_path, args, says):
    result = run(tmp_path, *args, "--db", str(db))
    assert result.returncode == 2 and says in result.stderr
    assert len(json.loads(run(tmp_path, "list", "--json", "--db", str(db)).stdout)) == 2


def test_purge_with_yes(db, tmp_path):
    result = run(tmp_path, "purge", "--yes", "--db", str(db))
    assert result.returncode == 0 and "purged 2 dead-lettered messages" in result.stdout
    assert "the dead-letter queue is empty" in run(tmp_path, "list", "--db", str(db)).stdout


def test_purge_without_a_terminal_or_yes_exits_2_saying_to_pass_yes_and_deletes_nothing(db, tmp_path):
    result = run(tmp_path, "purge", "--db", str(db))
    assert result.returncode == 2 and "pass --yes" in result.stderr and result.stdout == ""
    assert len(json.loads(run(tmp_path, "list", "--json", "--db", str(db)).stdout)) == 2


def on_a_terminal(cwd, answer: str, *args: str) -> tuple[int, str]:
    """Run ``dlq ARGS`` with a pseudo-terminal as its standard input, typing ``answer``; return its status and output."""
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LETSGO_")}
    process = subprocess.Popen([sys.executable, "-m", "host.cli", "dlq", *args], cwd=cwd, env=clean,
                               stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, typed, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the process ended and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not typed and b"[y/N]" in output:
                os.write(leader, answer.encode() + b"\n")
                typed = True
            if process.poll() is not None and not ready:
                break
        return process.wait(10), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(leader)


@pytest.mark.parametrize(("answer", "status", "left"), [("y", 0, 0), ("n", 1, 2), ("", 1, 2)])
def test_purge_on_a_terminal_asks_first(db, tmp_path, answer, status, left):
    code, output = on_a_terminal(tmp_path, answer, "purge", "--db", str(db))
    assert "Delete the 2 dead-lettered messages of" in output and "[y/N]" in output
    assert code == status
    assert ("purged 2 dead-lettered messages" in output) == (answer == "y")
    assert len(json.loads(run(tmp_path, "list", "--json", "--db", str(db)).stdout)) == left


def test_a_missing_database_is_an_error_not_a_new_file(tmp_path):
    missing = tmp_path / "nowhere.db"
    result = run(tmp_path, "list", "--db", str(missing))
    assert result.returncode == 2
    assert f"no local queue database at {missing}" in result.stderr and "--db" in result.stderr
    assert not missing.exists()
