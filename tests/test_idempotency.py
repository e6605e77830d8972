"""The idempotency store: SQLite (local runtime) and DynamoDB on moto's server, under concurrent claims."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from moto_server import aws, serialized_moto_server, unique  # noqa: F401 (fixtures)

from host.services.idempotency import (
    COMPLETED,
    DEFAULT_TTL_SECONDS,
    IN_PROGRESS,
    DynamoIdempotencyStore,
    IdempotencyError,
    IdempotencyStore,
    SqliteIdempotencyStore,
    get_store,
    sqlite_path_beside,
)


#: This module's moto server handles one request at a time, as DynamoDB handles the writes to one item.
moto_server = pytest.fixture(scope="module")(serialized_moto_server)


def template_table() -> dict:
    """The properties of the idempotency table in the SAM template."""
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.load(str(Path(__file__).resolve().parent.parent / "template.yaml"))
    table = template["Resources"]["IdempotencyTable"]
    assert table["Condition"] == "HasIdempotencyTable"
    return table["Properties"]


def create_table(dynamodb) -> str:
    """A table made exactly as the SAM template makes it."""
    properties = template_table()
    name = unique("idempotency")
    dynamodb.create_table(
        TableName=name, BillingMode=properties["BillingMode"],
        AttributeDefinitions=properties["AttributeDefinitions"], KeySchema=properties["KeySchema"],
    )
    ttl = properties["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": ttl["Enabled"], "AttributeName": ttl["AttributeName"]}
    )
    return name


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_store(tmp_path):
    store = SqliteIdempotencyStore(str(tmp_path / "idempotency.db"), clock=Clock())
    yield store
    store.close()


@pytest.fixture
def dynamo_store(aws):
    table = create_table(aws.client("dynamodb"))
    return DynamoIdempotencyStore(table, region="us-east-1", clock=Clock())


@pytest.fixture(params=["sqlite", "dynamo"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


# -- semantics, for both stores ---------------------------------------------------------------


def test_is_an_idempotency_store(store):
    assert isinstance(store, IdempotencyStore)


def test_first_claim_wins_until_released(store):
    assert store.claim("stripe:evt_1:handler") is True
    assert store.claim("stripe:evt_1:handler") is False
    assert store.claim("stripe:evt_2:handler") is True
    store.release("stripe:evt_1:handler")
    assert store.claim("stripe:evt_1:handler") is True
    assert store.claim("stripe:evt_1:handler") is False


def test_releasing_an_unclaimed_key_is_harmless(store):
    store.release("never-claimed")
    assert store.claim("never-claimed") is True


def test_a_claim_expires_after_its_ttl(store):
    assert store.claim("order:1", ttl_seconds=60) is True
    store.clock.now += 59
    assert store.claim("order:1", ttl_seconds=60) is False
    store.clock.now += 1
    assert store.claim("order:1", ttl_seconds=60) is True
    assert store.claim("order:1") is False


def test_default_ttl_is_a_week(store):
    assert DEFAULT_TTL_SECONDS == 7 * 24 * 3600
    assert store.claim("k") is True
    store.clock.now += DEFAULT_TTL_SECONDS - 1
    assert store.claim("k") is False
    store.clock.now += 1
    assert store.claim("k") is True


@pytest.mark.parametrize("key", ["", None, 42])
def test_keys_must_be_non_empty_strings(store, key):
    with pytest.raises(ValueError, match="non-empty string"):
        store.claim(key)


def test_concurrent_claims_of_one_key_have_one_winner(store):
    barrier = threading.Barrier(16)

    def claim(_):
        barrier.wait()
        return store.claim("stripe:evt_race:handler")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, range(16)))
    assert results.count(True) == 1


def test_concurrent_claims_of_many_keys_each_win_once(store):
    keys = [f"key-{n % 25}" for n in range(100)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(store.claim, keys))
    winners = [key for key, won in zip(keys, results) if won]
    assert sorted(winners) == sorted(set(keys))


# -- record states, for both stores -----------------------------------------------------------


def test_begin_starts_once_then_reports_in_progress_then_completed(store):
    first = store.begin("stripe:evt_1:h", expires_in=60, owner="m-1")
    assert first.started and first.record.status == IN_PROGRESS and first.token
    again = store.begin("stripe:evt_1:h", expires_in=60, owner="m-2")
    assert not again.started and again.in_progress and again.record.owner == "m-1"

    store.complete("stripe:evt_1:h", first.token)
    after = store.begin("stripe:evt_1:h", expires_in=60, owner="m-3")
    assert not after.started and after.completed
    assert store.get("stripe:evt_1:h").status == COMPLETED


def test_abandon_frees_only_its_own_in_progress_record(store):
    first = store.begin("k", expires_in=60)
    store.abandon("k", "not-the-token")
    assert store.begin("k", expires_in=60).in_progress
    store.abandon("k", first.token)
    assert store.get("k") is None
    assert store.begin("k", expires_in=60).started


def test_abandon_never_erases_a_completed_record(store):
    first = store.begin("k", expires_in=60)
    store.complete("k", first.token)
    store.abandon("k", first.token)
    assert store.get("k").status == COMPLETED


def test_an_expired_in_progress_record_is_taken_over_and_the_late_abandon_keeps_the_new_one(store):
    crashed = store.begin("k", expires_in=60, owner="m-1")
    store.clock.now += 59
    assert store.begin("k", expires_in=60, owner="m-2").in_progress
    store.clock.now += 1
    takeover = store.begin("k", expires_in=60, owner="m-2")
    assert takeover.started and takeover.token != crashed.token
    store.abandon("k", crashed.token)  # the first delivery wakes up and gives up: not its record any more
    assert store.get("k").owner == "m-2"


def test_the_same_owner_takes_over_its_own_record_at_once(store):
    store.begin("k", expires_in=600, owner="message-1")
    assert store.begin("k", expires_in=600, owner="message-1").started
    assert store.begin("k", expires_in=600).in_progress  # no owner: no takeover


def test_completed_records_are_kept_forever_without_a_ttl_and_expire_with_one(store):
    store.complete("forever", store.begin("forever", expires_in=60).token)
    store.complete("a-day", store.begin("a-day", expires_in=60).token, ttl_seconds=86400)
    store.clock.now += 86400
    assert store.get("a-day") is None and store.begin("a-day", expires_in=60).started
    store.clock.now += 10 * 365 * 86400
    assert store.get("forever").expires_at is None
    assert store.begin("forever", expires_in=60).completed


@pytest.mark.parametrize("expires_in", [0, -1, None, True])
def test_an_in_progress_expiry_must_be_positive(store, expires_in):
    with pytest.raises(ValueError, match="positive number of seconds"):
        store.begin("k", expires_in=expires_in)


def test_concurrent_begins_of_one_key_have_one_winner(store):
    barrier = threading.Barrier(16)

    def begin(n):
        barrier.wait()
        return store.begin("stripe:evt_race:handler", expires_in=60, owner=f"message-{n}").started

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(begin, range(16)))
    assert results.count(True) == 1


def test_a_completion_is_never_lost_to_concurrent_deliveries(store):
    """One delivery finishes the work while others keep checking, starting and giving up."""
    keys = [f"job-{n}" for n in range(20)]
    winners = {key: store.begin(key, expires_in=60, owner="winner") for key in keys}

    def checker(n):
        for key in keys:
            begun = store.begin(key, expires_in=60, owner=f"checker-{n}")
            if begun.started:  # never: the winner holds or completed every key
                store.abandon(key, begun.token)
                return key
        return None

    with ThreadPoolExecutor(8) as pool:
        checks = [pool.submit(checker, n) for n in range(6)]
        for key in keys:
            store.complete(key, winners[key].token)
        assert [check.result(30) for check in checks] == [None] * 6
    assert all(store.get(key).status == COMPLETED for key in keys)


# -- SQLite specifics ---------------------------------------------------------------------------

CLAIMER = """
import json, sys
from host.services.idempotency import SqliteIdempotencyStore
store = SqliteIdempotencyStore(sys.argv[1])
print(json.dumps([key for key in (f"job-{n}" for n in range(200)) if store.claim(key)]))
"""


def test_sqlite_claims_are_exclusive_across_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    processes = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, path], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    won = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    everything = [key for keys in won for key in keys]
    assert sorted(everything) == sorted(f"job-{n}" for n in range(200))


BEGINNER = """
import json, sys
from host.services.idempotency import SqliteIdempotencyStore
store = SqliteIdempotencyStore(sys.argv[1])
started = [key for key in (f"job-{n}" for n in range(200)) if store.begin(key, expires_in=60, owner=sys.argv[2]).started]
print(json.dumps(started))
"""


def test_sqlite_begins_are_exclusive_across_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    processes = [
        subprocess.Popen([sys.executable, "-c", BEGINNER, path, f"process-{n}"], stdout=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    started = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert sorted(key for keys in started for key in keys) == sorted(f"job-{n}" for n in range(200))


def test_sqlite_claims_survive_a_restart(tmp_path):
    path = str(tmp_path / "nested" / "idempotency.db")
    first = SqliteIdempotencyStore(path)
    assert first.claim("order:1") is True
    first.close()
    second = SqliteIdempotencyStore(path)
    assert second.claim("order:1") is False
    second.close()


def test_sqlite_path_sits_beside_the_local_queue():
    assert sqlite_path_beside(".letsgo/worker.db") == ".letsgo/worker.idempotency.db"
    assert sqlite_path_beside("/data/queue") == "/data/queue.idempotency.db"


# -- DynamoDB specifics --------------------------------------------------------------------------


def test_dynamo_item_carries_the_ttl_attribute_of_the_template(aws, dynamo_store):
    dynamo_store.claim("order:9", ttl_seconds=3600)
    item = aws.client("dynamodb").get_item(TableName=dynamo_store.table, Key={"id": {"S": "order:9"}})["Item"]
    ttl_attribute = template_table()["TimeToLiveSpecification"]["AttributeName"]
    assert int(item[ttl_attribute]["N"]) == int(dynamo_store.clock.now) + 3600


def test_dynamo_items_carry_the_state_and_a_kept_completion_has_no_ttl(aws, dynamo_store):
    client = aws.client("dynamodb")
    begun = dynamo_store.begin("order:10", expires_in=90, owner="m-1")
    item = client.get_item(TableName=dynamo_store.table, Key={"id": {"S": "order:10"}})["Item"]
    assert item["status"]["S"] == IN_PROGRESS and item["owner"]["S"] == "m-1"
    assert int(item["expires_at"]["N"]) == int(dynamo_store.clock.now) + 90
    dynamo_store.complete("order:10", begun.token)
    item = client.get_item(TableName=dynamo_store.table, Key={"id": {"S": "order:10"}})["Item"]
    assert item["status"]["S"] == COMPLETED and "expires_at" not in item


def test_dynamo_missing_table_names_it(aws):
    store = DynamoIdempotencyStore("no-such-table", region="us-east-1")
    with pytest.raises(IdempotencyError, match="'no-such-table'.*LETSGO_WORKER_IDEMPOTENCY_TABLE"):
        store.claim("order:1")


# -- get_store ---------------------------------------------------------------------------------------


def test_nothing_configured_means_no_store(make_worker):
    assert get_store(make_worker(entry_points=False)) is None


def test_idempotency_table_selects_dynamodb(aws, make_worker):
    table = create_table(aws.client("dynamodb"))
    worker = make_worker(entry_points=False, env={"LETSGO_WORKER_IDEMPOTENCY_TABLE": table, "AWS_REGION": "us-east-1"})
    store = get_store(worker)
    assert isinstance(store, DynamoIdempotencyStore) and store.table == table
    assert get_store(worker) is store
    assert store.claim("k") is True and store.claim("k") is False


def test_local_runtime_selects_sqlite_beside_its_queue(make_worker, tmp_path):
    worker = make_worker(entry_points=False)
    worker.local_db_path = str(tmp_path / "worker.db")
    store = get_store(worker)
    assert isinstance(store, SqliteIdempotencyStore)
    assert store.path == str(tmp_path / "worker.idempotency.db")
    assert store.claim("k") is True and get_store(worker).claim("k") is False


def test_an_explicit_store_wins(make_worker, tmp_path):
    worker = make_worker(entry_points=False, env={"LETSGO_WORKER_IDEMPOTENCY_TABLE": "ignored"})
    worker.idempotency_store = explicit = SqliteIdempotencyStore(":memory:")
    assert get_store(worker) is explicit


def test_importing_host_idempotency_loads_no_heavy_library():
    code = "import sys, host.services.idempotency; print([m for m in ('boto3', 'botocore') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


# -- run_once and idempotent: the store for apps' handlers ----------------------------------------------

import asyncio  # noqa: E402

from host import IdempotencyInProgressError, hookimpl, idempotent, run_once  # noqa: E402
from host.testing import run_batch  # noqa: E402


class Orders:
    """An app plugin sending one confirmation email per order, in a def and an async def handler."""

    __name__ = "orders"

    def __init__(self, fail_times: int = 0):
        self.sent: list[str] = []
        self.fail_times = fail_times

    def _send(self, order_id: str) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("smtp.example.com refused the connection")
        self.sent.append(order_id)

    @hookimpl
    def letsgo_register_messages(self, register):
        @idempotent(key=lambda message, ctx: f"order-email:{message.payload['orderId']}")
        def email(message, ctx):
            self._send(message.payload["orderId"])

        @idempotent(key=lambda message, ctx: f"order-sms:{message.payload['orderId']}", ttl_seconds=None)
        async def sms(message, ctx):
            await asyncio.sleep(0)
            self._send(f"sms:{message.payload['orderId']}")

        register("OrderEmail", email)
        register("OrderSms", sms)


@pytest.fixture
def orders_worker(make_worker, tmp_path):
    def make(orders):
        worker = make_worker(plugins=[orders], entry_points=False)
        worker.local_db_path = str(tmp_path / "worker.db")
        return worker

    return make


@pytest.mark.parametrize(("message_type", "sent"), [("OrderEmail", "o-1"), ("OrderSms", "sms:o-1")])
def test_an_idempotent_handler_runs_once_per_key(orders_worker, message_type, sent):
    orders = Orders()
    worker = orders_worker(orders)
    message = {"type": message_type, "payload": {"orderId": "o-1"}}
    assert run_batch(worker, message).response() == {"batchItemFailures": []}
    assert run_batch(worker, message).response() == {"batchItemFailures": []}  # a duplicate, later
    assert run_batch(worker, message, receive_count=2).response() == {"batchItemFailures": []}
    assert orders.sent == [sent]


def test_an_idempotent_handler_that_failed_runs_again_on_the_retry(orders_worker):
    orders = Orders(fail_times=1)
    worker = orders_worker(orders)
    message = {"type": "OrderEmail", "payload": {"orderId": "o-2"}}
    assert len(run_batch(worker, message).response()["batchItemFailures"]) == 1
    assert run_batch(worker, message, receive_count=2).response() == {"batchItemFailures": []}
    assert orders.sent == ["o-2"]


def test_work_in_progress_elsewhere_fails_the_message_for_a_later_retry(orders_worker):
    orders = Orders()
    worker = orders_worker(orders)
    get_store(worker).begin("order-email:o-3", expires_in=300, owner="another-message")
    result = run_batch(worker, {"type": "OrderEmail", "payload": {"orderId": "o-3"}})
    assert len(result.response()["batchItemFailures"]) == 1
    assert "'order-email:o-3' is in progress in another delivery" in result.outcomes[0].reason
    assert orders.sent == []


def test_without_a_store_an_idempotent_handler_runs_every_time(make_worker):
    orders = Orders()
    worker = make_worker(plugins=[orders], entry_points=False)
    message = {"type": "OrderEmail", "payload": {"orderId": "o-4"}}
    run_batch(worker, message)
    run_batch(worker, message)
    assert orders.sent == ["o-4", "o-4"]


def test_run_once_with_a_worker_keeps_the_completion_for_its_ttl(make_worker, tmp_path):
    worker = make_worker(entry_points=False, env={"LETSGO_WORKER_VISIBILITY_TIMEOUT": "45"})
    worker.idempotency_store = store = SqliteIdempotencyStore(str(tmp_path / "records.db"), clock=Clock())
    with run_once(worker, "nightly-report:2026-12-01", ttl_seconds=3600) as first_time:
        assert first_time
        record = store.get("nightly-report:2026-12-01")
        assert record.status == IN_PROGRESS and record.expires_at == store.clock.now + 45  # the visibility timeout
    assert store.get("nightly-report:2026-12-01").expires_at == store.clock.now + 3600
    with run_once(worker, "nightly-report:2026-12-01") as first_time:
        assert not first_time
    with pytest.raises(ZeroDivisionError), run_once(worker, "broken", expires_in=5) as first_time:
        assert first_time
        1 / 0
    assert store.get("broken") is None  # given up: the next attempt does the work
    with pytest.raises(IdempotencyInProgressError):
        store.begin("busy", expires_in=60)
        with run_once(worker, "busy"):
            pass
