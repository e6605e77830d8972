"""Plugin routes of the local server: registration rules, Request/Response, and a real in-process HTTP server."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from host import hookimpl
from host.errors import RegistrationError
from host.local.http_server import LocalServer
from host.local.intake import encode_message
from host.local.queue import LocalQueue
from host.local.routes import Headers, Request, RequestError, Response, RouteTable, collect_routes


class RoutesPlugin:
    def __init__(self, name: str, routes):
        self.__name__ = name
        self.routes = routes

    @hookimpl
    def letsgo_register_routes(self, register):
        for method, path, handler in self.routes:
            register(method, path, handler)


def ok(request):
    return Response(200, {"ok": True})


def test_a_path_registered_twice_is_a_start_up_error_naming_both_plugins(make_worker):
    worker = make_worker(
        plugins=[RoutesPlugin("billing", [("POST", "/hook", ok)]), RoutesPlugin("shop", [("post", "/hook", ok)])],
        entry_points=False,
    )
    with pytest.raises(RegistrationError, match="POST /hook is registered twice: by plugin 'billing' and by plugin 'shop'"):
        collect_routes(worker)


def test_routes_are_collected_with_their_plugin(make_worker):
    worker = make_worker(
        plugins=[RoutesPlugin("billing", [("POST", "/hook", ok), ("GET", "/hook", ok)])], entry_points=False
    )
    table = collect_routes(worker)
    assert [(r.method, r.path, r.plugin) for r in table] == [("POST", "/hook", "billing"), ("GET", "/hook", "billing")]
    assert table.allowed("/hook") == ["GET", "POST"]


@pytest.mark.parametrize(
    ("method", "path", "handler", "says"),
    [
        ("FETCH", "/x", ok, "method 'FETCH'"),
        ("POST", "x", ok, "starts with '/'"),
        ("POST", "/x?y=1", ok, "no query string"),
        ("POST", "/", ok, "serves itself"),
        ("GET", "/healthz", ok, "serves itself"),
        ("POST", "/x", "not callable", "not callable"),
    ],
)
def test_bad_routes_are_refused_naming_the_plugin(method, path, handler, says):
    with pytest.raises(RegistrationError, match="plugin 'p'") as error:
        RouteTable().add("p", method, path, handler)
    assert says in str(error.value)


def test_headers_are_case_insensitive_and_repeated_ones_are_joined():
    headers = Headers([("Stripe-Signature", "t=1,v1=abc"), ("Accept", "a"), ("accept", "b")])
    assert headers["stripe-signature"] == "t=1,v1=abc" and "STRIPE-SIGNATURE" in headers
    assert headers["Accept"] == "a, b"
    assert dict(headers) == {"Stripe-Signature": "t=1,v1=abc", "Accept": "a, b"}
    assert headers.get("missing") is None


def test_response_bodies_are_encoded_by_kind():
    assert Response(200, {"a": 1}).encode() == (b'{"a": 1}', {"Content-Type": "application/json"})
    assert Response(200, "hi").encode() == (b"hi", {"Content-Type": "text/plain; charset=utf-8"})
    assert Response(200, b"\x00").encode() == (b"\x00", {"Content-Type": "application/octet-stream"})
    assert Response(204).encode() == (b"", {})
    assert Response(200, "<p>", {"content-type": "text/html"}).encode() == (b"<p>", {"content-type": "text/html"})


def test_request_json_and_enqueue_without_a_queue():
    request = Request("POST", "/x", body=b"{oops")
    with pytest.raises(RequestError, match="not valid JSON"):
        request.json()
    with pytest.raises(Exception, match="no queue"):
        request.enqueue({"type": "t"})


@pytest.fixture
def served(tmp_path):
    """A LocalServer on a free port of 127.0.0.1 with routes of its own, over a real queue."""
    queue = LocalQueue(tmp_path / "queue.db")
    seen = {}

    def echo(request):
        seen["request"] = request
        message_id = request.enqueue({"type": "test:hook", "payload": request.json()}, delay_seconds=0)
        return Response(202, {"queued": message_id, "query": request.query}, {"X-Plugin": "shop"})

    def broken(request):
        raise RuntimeError("database is down")

    def wrong(request):
        return {"not": "a Response"}

    table = RouteTable()
    table.add("shop", "POST", "/echo", echo)
    table.add("shop", "GET", "/broken", broken)
    table.add("shop", "GET", "/wrong", wrong)
    server = LocalServer(
        "127.0.0.1", 0, queue=queue, routes=table,
        enqueue=lambda message, delay: queue.enqueue(encode_message(message), delay),
    ).start()
    yield server, queue, seen
    server.stop()
    queue.close()


def call(server, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_a_route_gets_the_request_and_its_enqueue_is_durable(served):
    server, queue, seen = served
    status, headers, answer = call(server, "POST", "/echo?a=1&a=2&b=", b'{"x": 1}', {"X-Custom": "yes"})
    assert status == 202 and headers["X-Plugin"] == "shop"
    assert answer["query"] == {"a": "1", "b": ""}
    request = seen["request"]
    assert request.method == "POST" and request.path == "/echo" and request.body == b'{"x": 1}'
    assert request.headers["x-custom"] == "yes"
    [record] = queue.receive(10, 0)
    assert record["messageId"] == answer["queued"]
    assert json.loads(record["body"]) == {"type": "test:hook", "payload": {"x": 1}}


def test_a_failing_route_is_a_500_naming_its_plugin(served):
    server, _, _ = served
    status, _, answer = call(server, "GET", "/broken")
    assert status == 500 and "plugin 'shop'" in answer["error"] and "database is down" in answer["error"]
    status, _, answer = call(server, "GET", "/wrong")
    assert status == 500 and "did not return a Response" in answer["error"]


def test_head_of_healthz_has_no_body(served):
    server, _, _ = served
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("HEAD", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b""
    connection.close()


def test_pipelined_requests_are_answered_in_order_and_a_closing_one_still_gets_its_answer(served):
    import socket

    server, queue, _ = served

    def post(n: int, *extra: str) -> bytes:
        body = json.dumps({"type": "test:pipelined", "payload": {"n": n}}).encode()
        head = ["POST / HTTP/1.1", "Host: x", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    # All four requests in one write: each POST / is answered once stored, yet the answers keep request order.
    requests = post(1) + post(2) + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" + post(3, "Connection: close")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(requests)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    statuses, ids = [], []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = int(next(line.split(":", 1)[1] for line in lines if line.lower().startswith("content-length:")))
        body, received = rest[:length], rest[length:]
        statuses.append(int(lines[0].split()[1]))
        if statuses[-1] == 201:
            ids.append(json.loads(body)["messageId"])
    assert statuses == [201, 201, 404, 201]
    records = queue.receive(10, 0)
    assert [r["messageId"] for r in records] == ids
    assert [json.loads(r["body"])["payload"]["n"] for r in records] == [1, 2, 3]


def test_a_message_the_queue_cannot_store_is_a_503(served):
    server, queue, _ = served
    queue.close()
    status, _, answer = call(server, "POST", "/", json.dumps({"type": "t", "payload": {}}), {"Content-Type": "application/json"})
    assert status == 503 and "could not store" in answer["error"] and "closed" in answer["error"]


def test_a_client_that_resets_its_connection_leaves_no_traceback(served, capfd):
    import socket
    import struct
    import time

    server, _, _ = served
    client = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # the server thread is now reading the headers
    time.sleep(0.2)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    client.close()
    status, _, _ = call(server, "GET", "/healthz")  # the server goes on serving
    time.sleep(0.2)
    assert status == 200
    assert "Traceback" not in capfd.readouterr().err


def raw_exchange(server, data: bytes) -> bytes:
    """Send ``data`` on a new connection, shut the sending side, and return everything answered."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("request_bytes", "starts", "contains"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b'"status": "ok"'),
        (b"GET //healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n", b"no route for GET //healthz"),
        (b"GET /healthz HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b'"status": "ok"'),
        (b"GET /healthz HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n", b"must have a Host header"),
        # Malformed framing is refused by llhttp, with a JSON answer and the connection closed.
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n", b"HTTP/1.1 400", b"RFC 9112"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", b"HTTP/1.1 400", b"RFC 9112"),
        (b"GET /healthz HTTP/1.x\r\n\r\n", b"HTTP/1.1 400", b"RFC 9112"),
        (b"GET /healthz HTTP/1.1 extra\r\n\r\n", b"HTTP/1.1 400", b"RFC 9112"),
        (b"GET /healthz\r\n\r\n", b"HTTP/1.1 400", b"HTTP/0.9 is not served"),
        (b"POST /\r\n", b"", b""),  # the client hung up inside the request head: nothing to answer
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"HTTP/1.1 431", b"longer than"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-H: v\r\n" * 101 + b"\r\n", b"HTTP/1.1 431", b"more than 100"),
    ],
    ids=["plain", "double-slash", "http-1.0", "no-host", "folded", "no-colon", "bad-version", "four-words",
         "http-0.9", "head-cut-short", "long-line", "many-headers"],
)
def test_request_lines_and_header_blocks(served, request_bytes, starts, contains):
    server, _, _ = served
    answer = raw_exchange(server, request_bytes)
    assert answer.startswith(starts) and contains in answer, answer[:300]


def test_expect_100_continue_gets_an_interim_answer_before_the_body(served):
    import socket

    server, queue, _ = served
    body = json.dumps({"type": "test:expect", "payload": {}}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                       + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        assert client.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n")
        client.sendall(body)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 201 Created\r\n")
    assert len(queue.receive(10, 0)) == 1


def test_a_pipelined_100_continue_comes_after_the_answer_before_it(served):
    import socket

    server, queue, _ = served
    first = json.dumps({"type": "test:first", "payload": {}}).encode()
    second = json.dumps({"type": "test:second", "payload": {}}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(first)}\r\n\r\n".encode() + first
            + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            + f"Connection: close\r\nContent-Length: {len(second)}\r\n\r\n".encode()
        )
        received = b""
        while b"100 Continue" not in received:
            chunk = client.recv(65536)
            assert chunk, received
            received += chunk
        client.sendall(second)
        while chunk := client.recv(65536):
            received += chunk
    import re

    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"201", b"100", b"201"]
    assert len(queue.receive(10, 0)) == 2


def test_a_client_that_never_finishes_its_request_head_is_disconnected(served, monkeypatch):
    import socket

    import host.local.http_server as http_server

    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_SECONDS", 0.5)
    server, queue, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: appl")  # and never the rest
        started = time.monotonic()
        # Meanwhile a whole request is answered as usual.
        assert call(server, "GET", "/healthz")[0] == 200
        assert slow.recv(65536) == b""  # closed by the server, without an answer
        assert idle.recv(65536) == b""  # connected and never sent a byte: closed too
        assert time.monotonic() - started < 5
    assert queue.counts()["visible"] == 0


def test_a_request_head_sent_in_time_keeps_its_keep_alive_connection(served, monkeypatch):
    import host.local.http_server as http_server

    monkeypatch.setattr(http_server, "HEAD_TIMEOUT_SECONDS", 0.5)
    server, _, _ = served
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            time.sleep(0.3)  # idle between requests is the keep-alive timeout's business, not the head's
    finally:
        connection.close()


def test_a_route_given_a_body_that_is_not_json_answers_400_not_500(served):
    server, queue, _ = served
    status, _, body = call(server, "POST", "/echo", body=b"{oops", headers={"Content-Type": "application/json"})
    assert status == 400 and "request body is not valid JSON" in body["error"], body
    assert queue.counts()["visible"] == 0


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"Origin": "https://evil.example", "Content-Type": "text/plain"}, 403, "requests from web pages are refused"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type: application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type: application/json"),
    ],
    ids=["cross-site-text", "text-plain", "form"],
)
def test_a_route_refuses_what_a_web_page_could_send_unless_it_opts_out(tmp_path, headers, status, words):
    queue = LocalQueue(tmp_path / "queue.db")
    table = RouteTable()

    def order(request):
        return Response(202, {"queued": request.enqueue({"type": "test:hook", "payload": request.json()})})

    table.add("shop", "POST", "/orders", order)
    table.add("shop", "POST", "/signed", order, from_web_pages=True)
    server = LocalServer("127.0.0.1", 0, queue=queue, routes=table,
                         enqueue=lambda message, delay: queue.enqueue(encode_message(message), delay)).start()
    try:
        answered, _, body = call(server, "POST", "/orders", body=b'{"n": 1}', headers=headers)
        assert answered == status and words in body["error"], body
        assert queue.counts()["visible"] == 0
        # A route that verifies its caller itself takes the same request.
        assert call(server, "POST", "/signed", body=b'{"n": 1}', headers=headers)[0] == 202
        assert call(server, "POST", "/orders", body=b'{"n": 2}', headers={"Content-Type": "application/json"})[0] == 202
    finally:
        server.stop()
        queue.close()
