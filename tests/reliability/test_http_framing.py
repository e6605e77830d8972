"""Request framing, byte for byte, against a real ``letsgo-worker serve`` subprocess (RFC 9112).

Each case is a ``POST /`` whose framing RFC 9112 says a server must refuse
with 400 (or, marked as such, one where it says the request is invalid and a
server should answer 400): the request-smuggling shapes. Every case carries a
valid one-record ``letsgo:contact`` message, so that a server that accepted it
would store it; the message is delayed 900 seconds, so a stored one stays in
``/healthz``'s ``waiting`` count for the whole run. After each case: the answer's
status line is ``HTTP/1.1 400``, and ``/healthz``, ``dlq list --json`` and the
queue's id counter are unchanged.

The answer must come from the bytes sent: a server that answers only once the
client stops sending (a chunk size of -1 read as "to the end of the stream")
has not refused the framing, and the test says so.

Left out on purpose, because RFC 9112 lets a server accept them:

* ``Content-Length: 10, 10`` and two identical Content-Length fields (RFC 9110
  8.6: a recipient MAY reject or MAY use the single value);
* a bare LF ending the request line or a field line (RFC 9112 2.2: a recipient
  MAY recognise a single LF as a line terminator);
* an obs-fold, a bare CR or a NUL inside an ordinary field value (RFC 9112
  5.2 and 2.2, RFC 9110 5.5: a recipient MAY replace it with SP and go on);
  the cases below that have one are built so that replacing gives an invalid
  Host or Content-Length, which must be refused all the same;
* a request line whose elements are separated by more than one space
  (RFC 9112 3: a recipient MAY parse on whitespace word boundaries).

Both ``Transfer-Encoding: chunked`` and ``Content-Length`` is a case RFC 9112
6.1 lets a server either refuse or process by Transfer-Encoding alone (then
closing the connection); this project refuses it: the stricter of the two, and
what llhttp, the parser behind httptools, does by default.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from dataclasses import dataclass

import pytest

from .reliability_kit import Server, dead_letters, health, post, server_env, stored_count, wait_until

#: A valid ``letsgo:contact`` message.
CONTACT = {
    "type": "letsgo:contact",
    "payload": {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "message": "Is this request framed the way you think it is?",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "query": {},
    },
}

#: What every request carries: one record, held back 900 s so that, once stored, it stays counted.
BODY = json.dumps({"Records": [{"messageId": "framing-corpus", "body": json.dumps(CONTACT)}], "delaySeconds": 900}).encode()
LENGTH = str(len(BODY))

#: Seconds a server has to answer bytes that are all sent (generous: the CI machine is shared).
ANSWER_SECONDS = 10


def request(*fields: str, body: bytes = BODY, start: str = "POST / HTTP/1.1", host: bool = True) -> bytes:
    """A request: ``start``, ``Host`` (unless ``host`` is false), ``Content-Type``, ``fields``, a blank line, ``body``.

    Lines are joined with CRLF; ``fields`` go out exactly as written (latin-1),
    bare CRs, NULs and leading spaces included.
    """
    lines = [start, *(["Host: 127.0.0.1"] if host else []), "Content-Type: application/json", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(size: str, data: bytes = BODY, after_data: bytes = b"\r\n", size_end: bytes = b"\r\n") -> bytes:
    """``data`` as one chunk whose size line says ``size``, then the last chunk and the end of the message."""
    return size.encode() + size_end + data + after_data + b"0\r\n\r\n"


HEX = f"{len(BODY):x}"
CHUNKED = "Transfer-Encoding: chunked"

#: The answer every case wants: ``HTTP/1.1 400`` to the bytes sent (see :attr:`Answer.outcome`).
REFUSED = {"400"}
#: For a length no parser can hold, 413 Content Too Large is a refusal too.
REFUSED_OR_TOO_LARGE = {"400", "413"}
#: For a request that is incomplete under HTTP/1.1: a 400, or closing once the client stops sending (RFC 9112 8).
REFUSED_OR_CLOSED_AT_END = {"400", "at end: 400", "at end: closed"}

# (id with its RFC 9112 section, request bytes, outcomes allowed). MUST: RFC 9112 requires the 400;
# SHOULD: the request does not match the grammar and RFC 9112 2.2 says a server should answer 400.
CORPUS = [
    # -- Content-Length (6.3 item 5: an invalid Content-Length in a request MUST get 400; RFC 9110 8.6: 1*DIGIT)
    ("6.3-content-length-underscore-1_0", request(f"Content-Length: {LENGTH[0]}_{LENGTH[1:]}"), REFUSED),  # MUST
    ("6.3-content-length-plus-sign", request(f"Content-Length: +{LENGTH}"), REFUSED),  # MUST
    ("6.3-content-length-minus-sign", request(f"Content-Length: -{LENGTH}"), REFUSED),  # MUST
    ("6.3-content-length-hex-0x", request(f"Content-Length: 0x{HEX}"), REFUSED),  # MUST
    ("6.3-content-length-space-inside-digits", request(f"Content-Length: {LENGTH[0]} {LENGTH[1:]}"), REFUSED),  # MUST
    ("6.3-content-length-empty", request("Content-Length: "), REFUSED),  # MUST
    ("6.3-content-length-two-different-fields", request(f"Content-Length: {LENGTH}", "Content-Length: 10"), REFUSED),  # MUST
    ("6.3-content-length-list-of-different-values", request(f"Content-Length: {LENGTH}, 10"), REFUSED),  # MUST
    # A 64-bit parser that wraps reads 2**64 + n as n (RFC 9110 8.6: MUST prevent overflow); 413 refuses it too.
    ("6.3-content-length-over-64-bits", request(f"Content-Length: {2**64 + len(BODY)}"), REFUSED_OR_TOO_LARGE),
    # -- Transfer-Encoding (6.3 item 3: chunked not the final coding of a request MUST get 400)
    ("6.3-transfer-encoding-gzip-with-content-length",
     request("Transfer-Encoding: gzip", f"Content-Length: {LENGTH}"), REFUSED),  # MUST
    ("6.3-transfer-encoding-chunked-then-gzip", request("Transfer-Encoding: chunked, gzip", body=chunked(HEX)), REFUSED),  # MUST
    ("6.3-transfer-encoding-chunked-then-gzip-in-two-fields",
     request(CHUNKED, "Transfer-Encoding: gzip", body=chunked(HEX)), REFUSED),  # MUST
    ("6.3-transfer-encoding-unknown-coding-identity",
     request("Transfer-Encoding: identity", f"Content-Length: {LENGTH}"), REFUSED),  # MUST
    ("6.3-transfer-encoding-unknown-coding-xchunked", request("Transfer-Encoding: xchunked", body=chunked(HEX)), REFUSED),  # MUST
    # 6.1: MAY refuse or process by Transfer-Encoding alone; this project refuses (see the module docstring).
    ("6.1-transfer-encoding-chunked-and-content-length",
     request(CHUNKED, f"Content-Length: {len(chunked(HEX))}", body=chunked(HEX)), REFUSED),
    # 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty framing.
    ("6.1-transfer-encoding-in-http-1.0", request(CHUNKED, body=chunked(HEX), start="POST / HTTP/1.0"), REFUSED),
    # -- chunk sizes and chunk framing (7.1: chunk-size = 1*HEXDIG, each chunk's data ends with CRLF; SHOULD)
    ("7.1-chunk-size-0x-prefix", request(CHUNKED, body=chunked(f"0x{HEX}")), REFUSED),
    ("7.1-chunk-size-underscore-1_f", request(CHUNKED, body=chunked(f"{HEX[0]}_{HEX[1:]}")), REFUSED),
    ("7.1-chunk-size-plus-sign", request(CHUNKED, body=chunked(f"+{HEX}")), REFUSED),
    ("7.1-chunk-size-minus-one", request(CHUNKED, body=chunked("-1")), REFUSED),
    # 17 hex digits, 2**64 + n: a 64-bit parser that wraps reads n (7.1: MUST prevent overflow); 413 refuses it too.
    ("7.1-chunk-size-over-16-hex-digits", request(CHUNKED, body=chunked(f"1{len(BODY):016x}")), REFUSED_OR_TOO_LARGE),
    ("7.1-chunk-data-missing-its-crlf", request(CHUNKED, body=chunked(HEX, after_data=b"")), REFUSED),
    ("7.1-chunk-data-followed-by-other-bytes", request(CHUNKED, body=chunked(HEX, after_data=b"xx\r\n")), REFUSED),
    # 2.2's allowance for a bare LF covers the start line and fields only, not chunk framing.
    ("7.1-chunk-size-line-ends-in-bare-lf", request(CHUNKED, body=chunked(HEX, size_end=b"\n")), REFUSED),
    ("7.1-chunk-data-ends-in-bare-lf", request(CHUNKED, body=chunked(HEX, after_data=b"\n")), REFUSED),
    # -- field lines (5, 5.1, 5.2, 2.2)
    ("5.1-space-before-colon-transfer-encoding",
     request("Transfer-Encoding : chunked", f"Content-Length: {LENGTH}"), REFUSED),  # MUST
    ("5.1-tab-before-colon-transfer-encoding",
     request("Transfer-Encoding\t: chunked", f"Content-Length: {LENGTH}"), REFUSED),  # MUST
    ("5.1-space-before-colon-content-length", request(f"Content-Length : {LENGTH}"), REFUSED),  # MUST
    ("5-field-line-without-colon", request("X-Note this line has no colon", f"Content-Length: {LENGTH}"), REFUSED),  # SHOULD
    ("5-field-name-non-token-character", request("X-Note(1): a", f"Content-Length: {LENGTH}"), REFUSED),  # SHOULD
    ("5-field-name-with-space", request("X Note: a", f"Content-Length: {LENGTH}"), REFUSED),  # SHOULD
    ("5-field-name-empty", request(": a", f"Content-Length: {LENGTH}"), REFUSED),  # SHOULD
    # 5.2: MUST refuse an obs-fold or replace it with SP; replaced, these give an invalid Host / Content-Length.
    ("5.2-obs-fold-in-host",
     request("Host: 127.0.0.1", " evil.example", f"Content-Length: {LENGTH}", host=False), REFUSED),  # MUST
    ("5.2-obs-fold-in-content-length", request(f"Content-Length: {LENGTH[0]}", f" {LENGTH[1:]}"), REFUSED),  # MUST
    # 2.2: a line starting with whitespace before the first field MUST be refused or ignored (then Host is missing).
    ("2.2-whitespace-before-first-field",
     request(f"Content-Length: {LENGTH}", start="POST / HTTP/1.1\r\n Host: 127.0.0.1", host=False), REFUSED),  # MUST
    # 2.2: a bare CR MUST make its element invalid or be replaced by SP; replaced, these are invalid too.
    ("2.2-bare-cr-in-request-line", request(f"Content-Length: {LENGTH}", start="POST / HTTP/1.1\rX-Note: a"), REFUSED),
    ("2.2-bare-cr-ending-the-host-line",
     request("Host: 127.0.0.1\rX-Note: a", f"Content-Length: {LENGTH}", host=False), REFUSED),  # MUST
    ("2.2-bare-cr-ending-the-content-length-line", request(f"Content-Length: {LENGTH}\rX-Note: a"), REFUSED),  # MUST
    # RFC 9110 5.5: a NUL in a field value MUST be refused or replaced by SP; replaced, the Host is invalid.
    ("9110-5.5-nul-in-host",
     request("Host: 127.0.0.1\0evil.example", f"Content-Length: {LENGTH}", host=False), REFUSED),  # MUST
    # -- Host (3.2: a request lacking Host, with two, or with an invalid value MUST get 400)
    ("3.2-host-missing", request(f"Content-Length: {LENGTH}", host=False), REFUSED),  # MUST
    ("3.2-host-twice", request("Host: evil.example", f"Content-Length: {LENGTH}"), REFUSED),  # MUST
    ("3.2-host-invalid-value",
     request("Host: 127.0.0.1 evil.example", f"Content-Length: {LENGTH}", host=False), REFUSED),  # MUST
    # -- request line (3 and 2.3: an invalid request line SHOULD get 400)
    ("3-request-line-missing-version", request(f"Content-Length: {LENGTH}", start="POST /"), REFUSED),
    ("3-request-target-with-space", request(f"Content-Length: {LENGTH}", start="POST /a b HTTP/1.1"), REFUSED),
    # HTTP/1.1 has no HTTP/0.9: read as HTTP/1.1 it is a request line without a version and no end of the
    # header section yet. Never answered HTTP/0.9's way, with a body and no status line.
    ("2.3-http-0.9-simple-request", b"GET /\r\n", REFUSED_OR_CLOSED_AT_END),
    ("2.3-version-lowercase", request(f"Content-Length: {LENGTH}", start="POST / http/1.1"), REFUSED),
    ("2.3-version-not-numeric", request(f"Content-Length: {LENGTH}", start="POST / HTTP/1.x"), REFUSED),
    ("2.3-version-two-digit-minor", request(f"Content-Length: {LENGTH}", start="POST / HTTP/1.01"), REFUSED),
]


# -- the server and a raw client -------------------------------------------------------------

#: Slow connections held open at once by the slowloris test.
SLOW_CONNECTIONS = 1000

#: File descriptors the test process and the server each need for them, with room for the rest.
DESCRIPTORS_NEEDED = SLOW_CONNECTIONS + 512


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One ``serve`` on port 0 with only the built-ins, its own queue, and room for the slow connections.

    The file-descriptor limit is raised before the server starts: the subprocess inherits it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, 4 * DESCRIPTORS_NEEDED)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    root = tmp_path_factory.mktemp("http-framing")
    running = Server(root / "queue.db", root / "server.log", server_env())
    try:
        running.start()
        yield running
    finally:
        running.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _first_line(connection: socket.socket) -> bytes | None:
    """The first line the server sends (b"" if it closes without sending any); None if nothing comes in time."""
    received = b""
    while b"\n" not in received:
        try:
            chunk = connection.recv(4096)
        except TimeoutError:
            return received or None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return received.split(b"\n", 1)[0].rstrip(b"\r")


@dataclass(frozen=True)
class Answer:
    """What a server did with the bytes of one request.

    ``line`` is the first line it sent (b"" when it closed the connection
    without sending any, None when nothing came); ``at_end`` says it came only
    once the client had stopped sending (half-close), after the server had let
    ``ANSWER_SECONDS`` pass without a word: it was waiting for more bytes.
    """

    line: bytes | None
    at_end: bool

    @property
    def outcome(self) -> str:
        """The status code of an ``HTTP/1.1`` status line (``"400"``), else ``"not HTTP/1.1"``, ``"closed"`` or ``"none"``.

        Prefixed with ``"at end: "`` when it came only once the client stopped sending.
        """
        if self.line is None:
            what = "none"
        elif not self.line:
            what = "closed"
        else:
            version, _, rest = self.line.partition(b" ")
            what = rest[:3].decode("latin-1") if version == b"HTTP/1.1" and rest[:3].isdigit() else "not HTTP/1.1"
        return f"at end: {what}" if self.at_end else what

    def __str__(self) -> str:
        if self.line is None:
            said = "nothing"
        elif not self.line:
            said = "closed the connection without an answer"
        else:
            said = repr(self.line.decode("latin-1")[:200])
        return f"{said} (only once the client stopped sending)" if self.at_end else said


def exchange(port: int, data: bytes, timeout: float = ANSWER_SECONDS) -> Answer:
    """Send ``data`` on a new connection and read the first line of the answer.

    When nothing comes within ``timeout`` seconds the client stops sending
    (half-close) and reads again, so that a server that waits for more bytes
    shows what it then makes of the request.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a server may refuse and close before it has read everything
        line = _first_line(connection)
        if line is not None:
            return Answer(line, at_end=False)
        try:
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return Answer(_first_line(connection), at_end=True)


def queue_snapshot(server) -> dict:
    """What shows a message was stored: ``/healthz`` counts (a fresh connection), the dead letters, the id counter."""
    return {
        "healthz": health(server.url)["queue"],
        "dead_letters": dead_letters(server.db),
        "ever_stored": stored_count(server.db),
    }


# -- the corpus and its controls ---------------------------------------------------------------


@pytest.mark.parametrize("data,outcomes", [case[1:] for case in CORPUS], ids=[case[0] for case in CORPUS])
def test_bad_framing_is_refused_with_400_and_stores_nothing(server, data, outcomes):
    before = queue_snapshot(server)
    answer = exchange(server.port, data)
    after = queue_snapshot(server)
    stored = "and the message was stored" if after != before else "and nothing was stored"
    assert answer.outcome in outcomes, f"answered {answer} {stored}; expected {sorted(outcomes)}"
    assert after == before, "a refused request changed the queue"


CONTROLS = [
    ("content-length", request(f"Content-Length: {LENGTH}")),
    ("chunked", request(CHUNKED, body=chunked(HEX))),
    ("chunked-in-two-chunks",
     request(CHUNKED, body=b"a\r\n" + BODY[:10] + b"\r\n" + chunked(f"{len(BODY) - 10:x}", BODY[10:]))),
]


@pytest.mark.parametrize("data", [case[1] for case in CONTROLS], ids=[case[0] for case in CONTROLS])
def test_the_same_message_framed_correctly_is_stored(server, data):
    """The corpus cannot pass by a server that refuses everything: built the same way, framed right, it is stored."""
    before = queue_snapshot(server)
    answer = exchange(server.port, data)
    assert answer.outcome == "201", str(answer)
    after = queue_snapshot(server)
    assert after["ever_stored"] == before["ever_stored"] + 1
    assert after["healthz"]["waiting"] == before["healthz"]["waiting"] + 1, (before, after)
    assert after["dead_letters"] == before["dead_letters"]


# -- slow connections ------------------------------------------------------------------------

#: What each slow connection sends before it stalls: part of a request line, or part of the header block.
SLOW_STARTS = [b"POST / HT", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"]


def open_descriptors(pid: int) -> int:
    """How many files the process ``pid`` (the server this module started) has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_slow_connections_do_not_hold_up_another_client(server):
    """1,000 clients stalled mid-request (a slowloris); another still gets its 201 and /healthz within a second each."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= DESCRIPTORS_NEEDED, f"the file-descriptor limit is {soft}; this test needs {DESCRIPTORS_NEEDED}"
    pid = server.process.pid
    baseline = open_descriptors(pid)
    slow: list[socket.socket] = []
    try:
        for n in range(SLOW_CONNECTIONS):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            slow.append(connection)
            connection.sendall(SLOW_STARTS[n % len(SLOW_STARTS)])
        # Held by the server itself, not only waiting in the kernel's accept queue.
        wait_until(lambda: open_descriptors(pid) >= baseline + SLOW_CONNECTIONS, 60,
                   message=f"the server to hold {SLOW_CONNECTIONS} slow connections")
        before = health(server.url)["queue"]

        started = time.monotonic()
        status, reply, _ = post(server.url, BODY, timeout=10)
        posted = time.monotonic() - started
        assert status == 201, reply
        assert posted < 1.0, f"POST / took {posted:.2f}s with {SLOW_CONNECTIONS} slow connections open"

        started = time.monotonic()
        status, counts, _ = post(server.url + "/healthz", b"", method="GET", timeout=10)
        answered = time.monotonic() - started
        assert status == 200, counts
        assert answered < 1.0, f"GET /healthz took {answered:.2f}s with {SLOW_CONNECTIONS} slow connections open"
        assert counts["queue"]["waiting"] == before["waiting"] + 1, (before, counts)
    finally:
        for connection in slow:
            connection.close()
