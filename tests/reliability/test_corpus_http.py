"""Bad HTTP requests against a real ``letsgo-worker serve`` subprocess.

Each case asserts the exact status and an error that names the problem; a refused
request stores nothing; an accepted message that can never be handled ends in the
dead-letter queue with its reason (where the original answered 201 and dropped it);
and after every case the server still answers and still handles good messages.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from .reliability_kit import (
    Server,
    dead_letters,
    deeply_nested,
    health,
    install_ledger_plugin,
    post,
    read_ledger,
    server_env,
    stored_count,
    wait_until,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("http-corpus")
    plugin_root = install_ledger_plugin(root / "plugins")
    env = server_env(plugin_root, REL_LEDGER=str(root / "ledger"))
    running = Server(root / "queue.db", root / "server.log", env).start()
    running.ledger = str(root / "ledger")
    yield running
    running.stop()


def good_message(n: int) -> dict:
    return {"type": "rel.count", "payload": {"n": n}}


_numbers = iter(range(1, 10**9))


def assert_still_serving(server) -> None:
    """The server answers health checks and handles a fresh message end to end."""
    n = next(_numbers)
    status, body, _ = post(server.url, good_message(n))
    assert status == 201, body
    wait_until(lambda: any(row[0] == "ok" and row[1] == n for row in read_ledger(server.ledger)), 60,
               message=f"message {n} to be handled")


REFUSED = [
    # (case, body, extra headers, status, words in the error)
    ("not-json", b"Test message.", {}, 400, ["not valid JSON"]),
    ("empty", b"", {}, 400, ["empty"]),
    ("whitespace", b"  \r\n ", {}, 400, ["empty"]),
    ("null", b"null", {}, 400, ["null"]),
    ("array", b"[]", {}, 400, ["an array"]),
    ("array-of-messages", json.dumps([good_message(0)]).encode(), {}, 400, ["an array"]),
    ("string", b'"rel.count"', {}, 400, ["a string"]),
    ("number", b"42", {}, 400, ["a number"]),
    ("boolean", b"false", {}, 400, ["a boolean"]),
    ("empty-object", b"{}", {}, 400, ['neither "Records" nor "type"']),
    ("records-string", b'{"Records": "abc"}', {}, 400, ['"Records" must be a non-empty array', "a string"]),
    ("records-empty", b'{"Records": []}', {}, 400, ['"Records" must be a non-empty array', "an empty array"]),
    ("records-object", b'{"Records": {}}', {}, 400, ['"Records" must be a non-empty array']),
    ("records-null", b'{"Records": null}', {}, 400, ['"Records" must be a non-empty array', "null"]),
    ("records-holding-string", b'{"Records": ["abc"]}', {}, 400, ["Records[0] must be an object", "a string"]),
    ("records-holding-number-after-good", b'{"Records": [{"body": "{}"}, 5]}', {}, 400, ["Records[1] must be an object"]),
    ("record-without-body", b'{"Records": [{}]}', {}, 400, ["Records[0].body must be a string"]),
    ("record-body-object", b'{"Records": [{"body": {"type": "rel.count"}}]}', {}, 400, ["Records[0].body must be a string", "an object"]),
    ("record-body-lone-surrogate", b'{"Records": [{"body": "\\ud800"}]}', {}, 400, ["Records[0].body is not valid Unicode"]),
    ("invalid-utf8", b'{"type": "rel.count", "payload": "\xff\xfe"}', {}, 400, ["not valid JSON", "utf-8"]),
    ("type-number", b'{"type": 42}', {}, 400, ['"type" must be a string', "a number"]),
    ("type-null", b'{"type": null}', {}, 400, ['"type" must be a string', "null"]),
    ("NaN", b'{"type": "rel.count", "payload": NaN}', {}, 400, ["not valid JSON", "NaN"]),
    ("Infinity", b'{"type": "rel.count", "payload": {"n": Infinity}}', {}, 400, ["not valid JSON", "Infinity"]),
    ("number-out-of-range", b'{"type": "rel.count", "payload": {"n": 1e400}}', {}, 400, ["1e400"]),
    ("huge-integer", b'{"type": "rel.count", "payload": ' + b"9" * 5000 + b"}", {}, 400, ["not valid JSON", "digits"]),
    ("trailing-garbage", b'{"type": "rel.count", "payload": {"n": 1}} xyz', {}, 400, ["not valid JSON", "Extra data"]),
    ("two-objects", b'{"type": "rel.count"}{"type": "rel.count"}', {}, 400, ["not valid JSON", "Extra data"]),
    ("truncated-json", b'{"type": "rel.count", "payload": {"n": ', {}, 400, ["not valid JSON"]),
    ("nested-100000", b'{"type": "rel.count", "payload": ' + deeply_nested(100_000).encode() + b"}", {}, 400, ["nested too deeply"]),
    ("over-256-KiB", json.dumps({"type": "rel.count", "payload": {"n": 1, "pad": "x" * (256 * 1024)}}).encode(), {}, 413, ["256 KiB"]),
    ("delay-negative", b'{"type": "rel.count", "payload": {"n": 1}, "delaySeconds": -1}', {}, 400, ["delaySeconds", "-1"]),
    ("delay-too-long", b'{"type": "rel.count", "payload": {"n": 1}, "delaySeconds": 901}', {}, 400, ["delaySeconds", "901"]),
    ("delay-string", b'{"type": "rel.count", "payload": {"n": 1}, "delaySeconds": "10"}', {}, 400, ["delaySeconds"]),
    ("delay-boolean", b'{"type": "rel.count", "payload": {"n": 1}, "delaySeconds": true}', {}, 400, ["delaySeconds"]),
    ("content-type-text", b'{"type": "rel.count", "payload": {"n": 1}}', {"Content-Type": "text/plain"}, 415, ["application/json"]),
    ("content-type-form", b'{"type": "rel.count", "payload": {"n": 1}}', {"Content-Type": "application/x-www-form-urlencoded"}, 415, ["application/json"]),
    ("origin-of-a-web-page", b'{"type": "rel.count", "payload": {"n": 1}}', {"Origin": "https://evil.example"}, 403, ["web pages", "evil.example"]),
    ("origin-null", b'{"Records": [{"body": "{}"}]}', {"Origin": "null"}, 403, ["web pages"]),
    ("content-type-multipart", b'{"type": "rel.count", "payload": {"n": 1}}', {"Content-Type": "multipart/form-data; boundary=x"}, 415, ["application/json"]),
]


@pytest.mark.parametrize("case,body,headers,status,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_request_stores_nothing_and_says_why(server, case, body, headers, status, words):
    before = stored_count(server.db)
    answered, reply, _ = post(server.url, body, headers=headers)
    assert answered == status, reply
    assert isinstance(reply, dict) and set(reply) == {"error"}, reply
    for word in words:
        assert word in reply["error"], reply["error"]
    assert len(reply["error"]) < 1000, "an error must not echo the request"
    assert stored_count(server.db) == before, "a refused request stored a message"
    assert_still_serving(server)


def test_missing_content_type_is_refused(server):
    """A body without Content-Type is what a web page can send to 127.0.0.1 without a CORS preflight."""
    import http.client

    before = stored_count(server.db)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/")
        data = json.dumps(good_message(1)).encode()
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        assert response.status == 415 and "application/json" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert stored_count(server.db) == before


def test_letsgo_queue_client_body_without_content_type_is_accepted(server):
    """LetsGo's queue client posts {"Records": [...]} with no Content-Type: kept working."""
    import http.client

    n = next(_numbers)
    data = json.dumps({"Records": [{"body": json.dumps(good_message(n))}]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.putrequest("POST", "/")
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders(data)
        assert connection.getresponse().status == 201
    finally:
        connection.close()
    wait_until(lambda: any(k == "ok" and m == n for k, m, *_ in read_ledger(server.ledger)), 60, message="handling")


def test_json_content_type_with_charset_is_accepted(server):
    n = next(_numbers)
    status, body, _ = post(server.url, good_message(n), headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 201, body


# Accepted, then dead-lettered with the reason: never answered 201 and dropped.
DEAD_LETTERED = [
    ("type-toString", {"type": "toString"}, ["unknown message type 'toString'"]),
    ("type-__proto__", {"type": "__proto__", "payload": {}}, ["unknown message type '__proto__'"]),
    ("type-constructor", {"type": "constructor", "payload": {}}, ["unknown message type 'constructor'"]),
    ("type-empty", {"type": ""}, ['"type" must be a non-empty string']),
    ("type-unknown", {"type": "NoSuchType", "payload": {"n": 1}}, ["unknown message type 'NoSuchType'", "rel.count"]),
    ("payload-invalid", {"type": "rel.count", "payload": {"n": "seven"}}, ["payload of 'rel.count' is invalid", "n"]),
    ("payload-missing", {"type": "rel.count"}, ["payload of 'rel.count' is invalid"]),
]


@pytest.mark.parametrize("case,message,words", DEAD_LETTERED, ids=[c[0] for c in DEAD_LETTERED])
def test_message_that_can_never_be_handled_is_dead_lettered_with_its_reason(server, case, message, words):
    status, reply, _ = post(server.url, message)
    assert status == 201, reply
    [message_id] = reply["messageIds"]
    letter = wait_until(lambda: next((d for d in dead_letters(server.db) if d["id"] == message_id), None), 60,
                        message="the message to be dead-lettered")
    for word in words:
        assert word in letter["last_error"], letter
    assert letter["receive_count"] == 1, "a rejected message must not be retried"
    assert json.loads(letter["body"]) == message
    assert_still_serving(server)


def test_bad_records_in_a_batch_do_not_affect_the_others(server):
    good = [next(_numbers) for _ in range(3)]
    records = [
        {"messageId": "rel-good-0", "body": json.dumps(good_message(good[0]))},
        {"messageId": "rel-not-json", "body": "Test message."},
        {"messageId": "rel-good-1", "body": json.dumps(good_message(good[1]))},
        {"messageId": "rel-toString", "body": '{"type": "toString"}'},
        {"messageId": "rel-no-type", "body": '{"payload": 1}'},
        {"messageId": "rel-good-2", "body": json.dumps(good_message(good[2]))},
    ]
    status, reply, _ = post(server.url, {"Records": records})
    assert status == 201, reply
    assert reply["messageIds"] == [r["messageId"] for r in records]
    wait_until(lambda: {n for kind, n, *_ in read_ledger(server.ledger) if kind == "ok"} >= set(good), 60,
               message="the good messages to be handled")
    expected = {"rel-not-json": "not valid JSON", "rel-toString": "unknown message type 'toString'", "rel-no-type": 'no "type"'}

    def bad_ones_dead_lettered():
        found = {d["id"]: d for d in dead_letters(server.db) if d["id"] in expected}
        return found if len(found) == len(expected) else None

    letters = wait_until(bad_ones_dead_lettered, 60, message="the bad records to be dead-lettered")
    for message_id, words in expected.items():
        assert words in letters[message_id]["last_error"]


def test_duplicate_keys_last_one_wins_as_in_javascript(server):
    n = next(_numbers)
    body = b'{"type": "toString", "type": "rel.count", "payload": {"n": 0}, "payload": {"n": %d}}' % n
    status, reply, _ = post(server.url, body)
    assert status == 201, reply
    wait_until(lambda: any(k == "ok" and m == n for k, m, *_ in read_ledger(server.ledger)), 60, message="handling")


def test_huge_batch_of_records_is_stored_whole_and_handled(server):
    numbers = [next(_numbers) for _ in range(2000)]
    records = [{"body": json.dumps(good_message(n), separators=(",", ":"))} for n in numbers]
    body = json.dumps({"Records": records}).encode()
    assert len(body) < 256 * 1024
    status, reply, _ = post(server.url, body)
    assert status == 201, reply
    assert len(set(reply["messageIds"])) == len(numbers)
    wait_until(lambda: {n for k, n, *_ in read_ledger(server.ledger) if k == "ok"} >= set(numbers), 120,
               message="2,000 messages to be handled")


METHODS_AND_PATHS = [
    ("GET", "/", 405, "use POST"),
    ("PUT", "/", 405, "use POST"),
    ("DELETE", "/", 405, "use POST"),
    ("PATCH", "/", 405, "use POST"),
    ("POST", "/healthz", 405, "use GET"),
    ("GET", "/nope", 404, "no route for GET /nope"),
    ("POST", "/messages", 404, "no route for POST /messages"),
    ("GET", "/../../etc/passwd", 404, "no route"),
]


@pytest.mark.parametrize("method,path,status,words", METHODS_AND_PATHS, ids=[f"{m} {p}" for m, p, *_ in METHODS_AND_PATHS])
def test_wrong_method_or_path(server, method, path, status, words):
    before = stored_count(server.db)
    answered, reply, headers = post(server.url + path, json.dumps(good_message(1)), method=method)
    assert answered == status and words in reply["error"], reply
    if status == 405:
        assert headers.get("Allow") in ("POST", "GET")
    assert stored_count(server.db) == before


# -- raw requests: framing, limits, slow and truncated clients -------------------------------


def raw_exchange(server, data: bytes, *, half_close: bool = True, timeout: float = 60) -> bytes:
    """Send ``data`` on a fresh connection and read the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(data)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def request_bytes(body: bytes, *headers: str, length: int | None = None, target: str = "/") -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


FRAMING = [
    ("content-length-not-a-number", request_bytes(b"{}", "Content-Length: abc"), 400, b"RFC 9112"),
    ("content-length-negative", request_bytes(b"{}", "Content-Length: -5"), 400, b"RFC 9112"),
    ("chunk-size-not-hex", request_bytes(b"zz\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), 400, b"RFC 9112"),
    ("chunked-over-the-request-limit", request_bytes(b"".join(b"10000\r\n" + b" " * 0x10000 + b"\r\n" for _ in range(42)) + b"0\r\n\r\n",
                                           "Transfer-Encoding: chunked"), 413, b"256 KiB"),
    ("header-line-over-64-KiB", request_bytes(b"{}", "X-Big: " + "a" * 70_000, length=2), 431, b""),
    ("too-many-headers", request_bytes(b"{}", *[f"X-H{i}: v" for i in range(200)], length=2), 431, b""),
    ("request-line-over-64-KiB", request_bytes(b"{}", length=2, target="/" + "a" * 70_000), 414, b"longer than"),
]


@pytest.mark.parametrize("case,data,status,words", FRAMING, ids=[c[0] for c in FRAMING])
def test_bad_framing_and_limits(server, case, data, status, words):
    before = stored_count(server.db)
    answer = raw_exchange(server, data)
    assert status_of(answer) == status, answer[:300]
    assert words in answer
    assert stored_count(server.db) == before
    assert_still_serving(server)


def test_garbage_that_is_not_http_gets_an_error(server):
    """A TLS handshake sent to the plain-HTTP port: a 400, nothing stored, still serving."""
    before = stored_count(server.db)
    answer = raw_exchange(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
    assert status_of(answer) == 400 and b"RFC 9112" in answer, answer[:300]
    assert stored_count(server.db) == before
    assert_still_serving(server)


def test_truncated_body_is_not_stored(server):
    """The client promises 1,000 bytes, sends a complete-looking message, then hangs up."""
    n = next(_numbers)
    before = stored_count(server.db)
    body = json.dumps(good_message(n)).encode()
    answer = raw_exchange(server, request_bytes(body, length=1000))
    assert status_of(answer) in (0, 400), answer[:300]
    time.sleep(1)
    assert stored_count(server.db) == before, "a truncated request was stored"
    assert_still_serving(server)


def chunked(body: bytes, pieces: int = 3) -> bytes:
    size = -(-len(body) // pieces)
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def test_chunked_message_is_accepted_and_handled(server):
    n = next(_numbers)
    answer = raw_exchange(server, request_bytes(chunked(json.dumps(good_message(n)).encode()), "Transfer-Encoding: chunked"))
    assert status_of(answer) == 201, answer[:300]
    wait_until(lambda: any(k == "ok" and m == n for k, m, *_ in read_ledger(server.ledger)), 60, message="handling")


def test_truncated_chunked_body_is_not_stored(server):
    """The client announces a 0x400-byte chunk, sends a complete-looking message in it, then hangs up."""
    before = stored_count(server.db)
    body = json.dumps(good_message(next(_numbers))).encode()
    answer = raw_exchange(server, request_bytes(b"400\r\n" + body, "Transfer-Encoding: chunked"))
    assert status_of(answer) in (0, 400), answer[:300]
    time.sleep(1)
    assert stored_count(server.db) == before, "a truncated request was stored"
    assert_still_serving(server)


def test_slow_clients_do_not_block_the_others(server):
    """Clients that dribble headers or bodies (slowloris) hold only their own connection."""
    slow = []
    try:
        for _ in range(20):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            connection.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")
            slow.append(connection)
        for _ in range(5):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            connection.sendall(request_bytes(b'{"type": ', length=500))
            slow.append(connection)
        for _ in range(3):
            assert_still_serving(server)
    finally:
        for connection in slow:
            connection.close()
    assert health(server.url)["status"] == "ok"


def test_client_that_disconnects_before_the_answer_does_not_lose_its_message(server):
    n = next(_numbers)
    body = json.dumps(good_message(n)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
        connection.sendall(request_bytes(body, length=len(body)))
    # The request was complete: whether or not the answer reached the client, the message is handled.
    wait_until(lambda: any(k == "ok" and m == n for k, m, *_ in read_ledger(server.ledger)), 60, message="handling")
