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
    DEFAULT_TTL_SECONDS,
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
