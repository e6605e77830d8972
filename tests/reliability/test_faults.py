"""Faults: handlers that fail at random, always, or hang; nothing is lost and nothing is done twice.

A real ``letsgo-worker serve`` subprocess runs the ledger plugin (found by
entry-point discovery); every handling attempt is appended to a ledger file, so
the test can count successes per message independently of the queue. Retries
are fast through the back-off knobs (fractions of a second); see
docs/RELIABILITY.md for the figures.
"""

from __future__ import annotations

import collections
import json

import pytest

from .reliability_kit import (
    Server,
    dead_letters,
    drained,
    install_ledger_plugin,
    post,
    read_ledger,
    scaled,
    server_env,
    wait_until,
)

MESSAGES = scaled(10_000, 50_000)
#: Every 100th message fails every time (1%); the others fail at random 30% of their attempts.
PERMANENT_EVERY = 100
FAIL_RATE = 0.3
#: With a 30% failure rate, 25 receives leave a transient message in the DLQ with probability 0.3**25 (~1e-13).
MAX_RECEIVES = 25
POST_CHUNK = 500


def permanent(n: int) -> bool:
    return n % PERMANENT_EVERY == PERMANENT_EVERY // 2


def send_all(url: str, messages: list[dict]) -> list[str]:
    ids = []
    for start in range(0, len(messages), POST_CHUNK):
        chunk = messages[start:start + POST_CHUNK]
        status, reply, _ = post(url, {"Records": [{"body": json.dumps(m)} for m in chunk]})
        assert status == 201, reply
        ids.extend(reply["messageIds"])
    return ids


def test_random_and_permanent_failures_end_in_one_success_or_one_dead_letter(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        REL_FAIL_RATE=str(FAIL_RATE),
        REL_SEED="20261128",
        LETSGO_WORKER_MAX_RECEIVE_COUNT=str(MAX_RECEIVES),
        LETSGO_WORKER_BACKOFF_BASE_SECONDS="0.001",
        LETSGO_WORKER_BACKOFF_MAX_SECONDS="0.02",
        LETSGO_WORKER_VISIBILITY_TIMEOUT="300",
        LETSGO_WORKER_LOG_LEVEL="WARNING",
    )
    messages = [{"type": "rel.flaky", "payload": {"n": n, "always_fail": permanent(n)}} for n in range(MESSAGES)]
    with Server(tmp_path / "queue.db", tmp_path / "server.log", env) as server:
        ids = send_all(server.url, messages)
        assert len(set(ids)) == MESSAGES
        wait_until(lambda: drained(server.url), scaled(900, 3600), interval=1, message=f"{MESSAGES} messages to settle")
        letters = dead_letters(server.db)

    rows = read_ledger(ledger)
    successes = collections.Counter(n for kind, n, *_ in rows if kind == "ok")
    failures = collections.Counter(n for kind, n, *_ in rows if kind == "fail")
    id_of = dict(zip(range(MESSAGES), ids))

    transient = [n for n in range(MESSAGES) if not permanent(n)]
    doomed = [n for n in range(MESSAGES) if permanent(n)]
    assert [n for n in transient if successes[n] != 1] == [], "a transient message was not handled exactly once"
    assert [n for n in doomed if successes[n]] == [], "a permanent failure was reported handled"
    assert [n for n in doomed if failures[n] != MAX_RECEIVES] == [], "a permanent failure was not tried exactly max-receives times"

    by_id = collections.Counter(letter["id"] for letter in letters)
    assert sorted(by_id) == sorted(id_of[n] for n in doomed), "the DLQ does not hold exactly the permanent failures"
    assert max(by_id.values()) == 1, "a message is in the DLQ twice"
    for letter in letters:
        n = json.loads(letter["body"])["payload"]["n"]
        assert letter["id"] == id_of[n]
        assert f"PermanentFailure: order {n} can never be processed" in letter["last_error"]
        assert letter["receive_count"] == MAX_RECEIVES

    attempts = sum(successes.values()) + sum(failures.values())
    transient_failures = sum(failures[n] for n in transient)
    print(
        f"\nfaults: {MESSAGES} messages, {attempts} handling attempts, {transient_failures} transient failures "
        f"({transient_failures / (transient_failures + len(transient)):.1%} of transient attempts), "
        f"{len(doomed)} dead-lettered, 0 lost, 0 handled twice"
    )


def test_hanging_handler_is_bounded_by_the_visibility_timeout_and_redelivered(tmp_path):
    plugin_root = install_ledger_plugin(tmp_path / "plugins")
    ledger = str(tmp_path / "ledger")
    env = server_env(
        plugin_root,
        REL_LEDGER=ledger,
        REL_HANG_SECONDS="600",
        LETSGO_WORKER_VISIBILITY_TIMEOUT="2",
        LETSGO_WORKER_MAX_VISIBILITY_EXTENSION="0",  # no heartbeat: the visibility timeout is the bound
        LETSGO_WORKER_CONCURRENCY="2",
        LETSGO_WORKER_BATCH_SIZE="1",
    )
    server = Server(tmp_path / "queue.db", tmp_path / "server.log", env).start()
    try:
        hung = [{"type": "rel.hang", "payload": {"n": n}} for n in (1, 2, 3)]
        status, reply, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in hung]})
        assert status == 201, reply
        # More hung handlers than concurrent batches: delivery must still go on.
        others = [{"type": "rel.count", "payload": {"n": n}} for n in range(100, 120)]
        status, _, _ = post(server.url, {"Records": [{"body": json.dumps(m)} for m in others]})
        assert status == 201

        def settled():
            rows = read_ledger(ledger)
            done = {n for kind, n, *_ in rows if kind == "ok"}
            return done >= {1, 2, 3} | set(range(100, 120)) and drained(server.url)

        wait_until(settled, 120, interval=0.5, message="hung messages to be redelivered and handled")
        rows = read_ledger(ledger)
        for n in (1, 2, 3):
            mine = [(kind, count) for kind, m, _, count in rows if m == n]
            assert mine[0] == ("hang", 1), mine
            assert [kind for kind, _ in mine].count("ok") == 1
            assert dict((kind, count) for kind, count in mine)["ok"] >= 2, "redelivery must count as another receive"
        assert "longer than the visibility timeout" in server.log()
    finally:
        server.kill()  # the hung handlers would hold a graceful stop for REL_HANG_SECONDS
