"""The local server's HTTP side: message intake on ``POST /``, ``GET /healthz`` and plugin routes.

``POST /`` takes what LetsGo's queue client sends (an SQS-shaped
``{"Records": [...]}``) or a bare ``{"type", "payload"}`` message with an
optional ``delaySeconds`` (0-900), stores the messages in one transaction and
answers 201 only once they are on disk. Intake checks the envelope only; what
is inside a message (its type, its payload, even whether a record's body is
JSON) is dispatch's business, so such messages are stored and then rejected
into the dead-letter queue with their reason: nothing is dropped unrecorded.

Standard library only (``http.server``), HTTP/1.1 with keep-alive.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.encoder import encode_basestring_ascii
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from host.errors import StartupError
from host.core.dispatch import json_kind, refuse_json_constant
from host.services.enqueue import MAX_DELAY_SECONDS
from host.local.routes import Headers, Request, Response, RouteTable

if TYPE_CHECKING:
    from host.local.queue import LocalQueue

logger = logging.getLogger("letsgo.http")

#: The largest request body accepted: SQS's message size limit (256 KiB).
MAX_BODY_BYTES = 256 * 1024

#: Bodies up to this size are read before a 413 is sent; larger ones are cut off.
_DRAIN_LIMIT = 4 * MAX_BODY_BYTES
_MAX_LINE = 1024

_SHAPES = '{"Records": [...]} (as LetsGo\'s queue client sends) or {"type": "...", "payload": ...}'
_NO_CONTENT_TYPE = (
    "send the message with Content-Type: application/json (only the {\"Records\": [...]} body of"
    " LetsGo's queue client, which sets no Content-Type, is accepted without one)"
)


class IntakeError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, the message says what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_delay(value: Any) -> float:
    """A ``delaySeconds`` value: a number of seconds from 0 to 900; raise :class:`IntakeError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_SECONDS:
        raise IntakeError(400, f"delaySeconds must be a number of seconds from 0 to {MAX_DELAY_SECONDS}, got {json.dumps(value)[:40]}")
    return float(value)


def encode_message(message: Any) -> str:
    """The body stored for a bare message: the object as compact JSON; raise :class:`IntakeError`."""
    if not isinstance(message, dict):
        raise IntakeError(400, f"a message must be a JSON object {{\"type\": \"...\", \"payload\": ...}}, got {json_kind(message)}")
    if not isinstance(message.get("type"), str):
        raise IntakeError(400, f"a message's \"type\" must be a string, got {json_kind(message.get('type'))}")
    return json.dumps(message, separators=(",", ":"))


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def parse_intake(data: bytes, *, typed: bool = True) -> tuple[list[tuple[str | None, str]], float]:
    """Read a ``POST /`` body: return ``[(message id or None, body)]`` and the delay in seconds.

    ``typed`` says the request had a ``Content-Type`` (checked by
    :func:`check_sender`); without one only LetsGo's ``{"Records": [...]}`` is
    accepted. Raises :class:`IntakeError` saying what is wrong with the envelope.
    """
    if not data.strip():
        raise IntakeError(400, f"request body is empty; send {_SHAPES}")
    try:
        value = json.loads(data, parse_constant=refuse_json_constant, parse_float=_finite_float)
    except RecursionError:
        raise IntakeError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise IntakeError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise IntakeError(400, f"expected a JSON object, {_SHAPES}; got {json_kind(value)}")
    delay = parse_delay(value["delaySeconds"]) if "delaySeconds" in value else 0.0
    if "Records" in value:
        records = value["Records"]
        if not isinstance(records, list) or not records:
            raise IntakeError(400, f"\"Records\" must be a non-empty array of SQS records, got {json_kind(records) if records != [] else 'an empty array'}")
        messages = []
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise IntakeError(400, f"Records[{index}] must be an object with a string \"body\", got {json_kind(record)}")
            body = record.get("body")
            if not isinstance(body, str):
                raise IntakeError(
                    400, f"Records[{index}].body must be a string (the message as JSON text), got {json_kind(body)}"
                )
            try:
                body.encode("utf-8")
            except UnicodeEncodeError as error:
                raise IntakeError(400, f"Records[{index}].body is not valid Unicode: {error.reason} at {error.start}") from None
            message_id = record.get("messageId")
            usable = isinstance(message_id, str) and 0 < len(message_id) <= 256
            messages.append((message_id if usable else None, body))
        return messages, delay
    if "type" in value:
        if not typed:
            raise IntakeError(415, _NO_CONTENT_TYPE)
        if not isinstance(value["type"], str):
            encode_message(value)  # raises, saying what is wrong with "type"
        if "delaySeconds" not in value:
            try:
                return [(None, data.decode("utf-8"))], delay  # stored exactly as sent
            except UnicodeDecodeError:  # JSON in UTF-16 or UTF-32
                pass
        message = {key: item for key, item in value.items() if key != "delaySeconds"}
        return [(None, encode_message(message))], delay
    raise IntakeError(400, f"expected {_SHAPES}; the object has neither \"Records\" nor \"type\"")


def check_sender(headers: Any) -> None:
    """Refuse what a web page could send to this port; raise :class:`IntakeError`.

    Browsers add ``Origin`` to every cross-origin POST (and a page that rebinds
    its DNS name to 127.0.0.1 sends it too), while API servers and tools do
    not; and a page can post without a CORS preflight only as ``text/plain``,
    a form, or with no ``Content-Type``.
    """
    origin = headers.get("Origin")
    if origin is not None:
        raise IntakeError(
            403, f"requests from web pages are refused (Origin: {origin[:100]}): enqueue from your API or a tool"
        )
    content_type = headers.get("Content-Type")
    if content_type is not None and content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise IntakeError(415, f"send the message as JSON with Content-Type: application/json, not {content_type[:100]!r}")


class LocalServer:
    """The HTTP server of ``letsgo-worker serve``; its threads are daemons.

    :param queue: the local queue that ``POST /`` stores into, or None when
        messages come from elsewhere (``serve --sqs``); then ``POST /`` answers 404
        with ``intake_note``.
    :param enqueue: what ``request.enqueue`` of a plugin route calls.
    :param health: returns the JSON of ``GET /healthz``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        queue: LocalQueue | None,
        routes: RouteTable | None = None,
        enqueue: Callable[[dict[str, Any], float], str] | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
        intake_note: str = "this server does not accept messages",
    ) -> None:
        self.queue = queue
        self.routes = routes or RouteTable()
        self.enqueue = enqueue
        self.health = health or (lambda: {"status": "ok"})
        self.intake_note = intake_note
        handler = type("LocalRequestHandler", (_Handler,), {"app": self})
        try:
            self.httpd = _Server((host, port), handler)
        except OSError as error:
            raise StartupError(
                f"cannot listen on {host}:{port}: {error.strerror or error}; pass --port (or set PORT) to use another port"
            ) from None
        self._thread: threading.Thread | None = None
        # Answers to POST / are written by one thread once their messages are on disk, so that a
        # request does not park its connection's thread until then (see intake_later).
        self._answers: SimpleQueue[tuple[Callable[[Response], None], Response] | None] = SimpleQueue()
        self._answerer: threading.Thread | None = None
        self._answers_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host = self.httpd.server_address[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> LocalServer:
        """Serve in a background thread."""
        if hasattr(self.queue, "enqueue_many_then"):
            self._answerer = threading.Thread(target=self._answer, name="letsgo-http-answers", daemon=True)
            self._answerer.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="letsgo-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and close the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        with self._answers_lock:
            answerer, self._answerer = self._answerer, None
            if answerer is not None:
                self._answers.put(None)  # answers still to come are written by whoever hands them over
        if answerer is not None:
            answerer.join(10)

    def _answer(self) -> None:
        while (item := self._answers.get()) is not None:
            answer, response = item
            try:
                answer(response)
            except Exception:
                logger.exception("could not answer a request")

    def _hand_over(self, answer: Callable[[Response], None], response: Response) -> None:
        with self._answers_lock:
            if self._answerer is not None:
                self._answers.put((answer, response))
                return
        answer(response)

    # -- request handling (called on the connection's thread) -------------------------

    def intake(self, data: bytes, headers: Any) -> Response:
        """``POST /``: store the messages, answer 201 with their ids once they are on disk."""
        checked = self._check_intake(data, headers)
        if isinstance(checked, Response):
            return checked
        messages, delay = checked
        try:
            ids = self.queue.enqueue_many(messages, delay)
        except Exception as error:
            logger.exception("could not store %d message(s)", len(messages))
            return _not_stored(error)
        return _created(ids)

    def intake_later(self, data: bytes, headers: Any, answer: Callable[[Response], None]) -> Response | None:
        """``POST /`` without waiting for the disk: the response to send now, or None.

        None means the messages are being stored and ``answer`` will be called,
        on another thread, with the 201 once they are on disk (or a 503 if they
        could not be stored).
        """
        if self._answerer is None:
            return self.intake(data, headers)
        checked = self._check_intake(data, headers)
        if isinstance(checked, Response):
            return checked
        messages, delay = checked

        def stored(ids: list[str] | None, error: BaseException | None) -> None:
            if error is not None:
                logger.error("could not store %d message(s)", len(messages), exc_info=error)
                self._hand_over(answer, _not_stored(error))
            else:
                self._hand_over(answer, _created(ids))

        try:
            self.queue.enqueue_many_then(messages, delay, stored)
        except Exception as error:
            logger.exception("could not store %d message(s)", len(messages))
            return _not_stored(error)
        return None

    def _check_intake(self, data: bytes, headers: Any) -> Response | tuple[list[tuple[str | None, str]], float]:
        if self.queue is None:
            return Response(404, {"error": self.intake_note})
        try:
            check_sender(headers)
            return parse_intake(data, typed=headers.get("Content-Type") is not None)
        except IntakeError as error:
            return Response(error.status, {"error": error.message})

    def route(self, request: Request) -> Response:
        """A plugin route, or 404/405."""
        route = self.routes.match(request.method, request.path)
        if route is None:
            allowed = self.routes.allowed(request.path)
            if allowed:
                return _not_allowed(request, allowed)
            return Response(404, {"error": f"no route for {request.method} {request.path}"})
        try:
            response = route.handler(request)
        except Exception as error:
            logger.exception("route %s %s of plugin %r failed", route.method, route.path, route.plugin)
            return Response(500, {"error": f"route {route.method} {route.path} of plugin {route.plugin!r} failed: {type(error).__name__}: {error}"})
        if not isinstance(response, Response):
            logger.error("route %s %s of plugin %r returned %r, not a Response", route.method, route.path, route.plugin, response)
            return Response(500, {"error": f"route {route.method} {route.path} of plugin {route.plugin!r} did not return a Response"})
        return response


def _created(ids: list[str]) -> Response:
    # The JSON json.dumps would write, {"messageId": ..., "messageIds": [...]}, without building an encoder.
    listed = ", ".join(map(encode_basestring_ascii, ids))
    if len(ids) == 1:
        text = f'{{"messageId": {listed}, "messageIds": [{listed}]}}'
    else:
        text = f'{{"messageIds": [{listed}]}}'
    return Response(201, text.encode(), {"Content-Type": "application/json"})


def _not_stored(error: BaseException) -> Response:
    return Response(503, {"error": f"the local queue could not store the message: {error}"})


def _not_allowed(request: Request, allowed: list[str]) -> Response:
    return Response(
        405, {"error": f"method {request.method} is not allowed on {request.path}; use {', '.join(allowed)}"},
        {"Allow": ", ".join(allowed)},
    )


#: Limits on header lines (http.client's): longer lines and more headers get 431.
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100


_HTTP_VERSION = re.compile(r"HTTP/([0-9]{1,10})\.([0-9]{1,10})")


class _HeadersTooLarge(Exception):
    """A header line or the number of header lines is over the limit (answered with 431)."""


def _read_header_lines(rfile: Any) -> list[tuple[str, str]]:
    """The header block of a request as ``(name, value)`` pairs, up to and including its blank line.

    Folded lines are joined to the one before, as the ``email`` parser does;
    a line without a colon is skipped.
    """
    pairs: list[tuple[str, str]] = []
    count = 0
    while True:
        line = rfile.readline(_MAX_HEADER_LINE + 1)
        if len(line) > _MAX_HEADER_LINE:
            raise _HeadersTooLarge(f"a header line is longer than {_MAX_HEADER_LINE} bytes")
        if line in (b"\r\n", b"\n", b""):
            return pairs
        count += 1
        if count > _MAX_HEADERS:
            raise _HeadersTooLarge(f"more than {_MAX_HEADERS} header lines")
        text = line.decode("iso-8859-1")
        if text[:1] in (" ", "\t"):
            if pairs:
                name, value = pairs[-1]
                pairs[-1] = (name, f"{value} {text.strip()}".strip())
            continue
        name, colon, value = text.partition(":")
        if colon and name and name == name.strip():
            pairs.append((name, value.strip()))


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header's value, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-request is a debug line; anything else is logged with its traceback.

        (socketserver's default prints a traceback to stderr for each, as load generators
        closing their connections do by the dozen.)
        """
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            logger.debug("connection from %s ended: %s", client_address[0], error)
            return
        logger.exception("error while handling a request from %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keeps it open for the next request."""

    app: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "letsgo-worker"
    # Without this, Nagle's algorithm and delayed ACKs can add tens of milliseconds
    # to a keep-alive request whose answer goes out in more than one write.
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120

    def parse_request(self) -> bool:
        """Read the request line and the header block; answer 400, 431 or 505 and return False if unusable.

        The checks http.server makes, with the headers read as name/value pairs:
        http.server hands the header block to the ``email`` package's parser,
        about 15 us per request even when the block is empty, several times the
        rest of the work of a ``POST /``.
        """
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if not words:
            return False
        if len(words) == 3:
            version = _HTTP_VERSION.fullmatch(words[2])
            if version is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({words[2][:40]!r})")
                return False
            major, minor = int(version[1]), int(version[2])
            if major >= 2:
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({major}.{minor})")
                return False
            self.request_version = words[2]
            self.close_connection = (major, minor) < (1, 1)  # HTTP/1.1 keeps the connection by default
        elif len(words) != 2:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({line[:100]!r})")
            return False
        elif words[0] != "GET":  # HTTP/0.9 knew only GET
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({words[0][:40]!r})")
            return False
        self.command, self.path = words[0], words[1]
        if self.path.startswith("//"):  # not a scheme-relative URL to be followed elsewhere
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = Headers(_read_header_lines(self.rfile))
        except _HeadersTooLarge as error:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, str(error))
            return False
        connection = self.headers.get("Connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "").lower()
        if expect == "100-continue" and self.protocol_version >= "HTTP/1.1" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    #: Held until the answer to a ``POST /`` being stored is written (see ``_answer_later``).
    _pending: threading.Lock | None = None

    def _handle(self) -> None:
        self._wait_for_answer()
        path, _, query = self.path.partition("?")
        data = self._read_body()
        if data is None:
            return
        if path == "/":
            if self.command == "POST":
                answer, written = self._answer_later()
                response = self.app.intake_later(data, self.headers, answer)
                if response is None:
                    self._pending = written  # this thread goes on reading; the answer comes from the server
                    return
                written.release()
            else:
                response = _not_allowed(self._request(path, query, data), ["POST"])
        elif path == "/healthz":
            if self.command in ("GET", "HEAD"):
                response = Response(200, self.app.health())
            else:
                response = _not_allowed(self._request(path, query, data), ["GET"])
        else:
            response = self.app.route(self._request(path, query, data))
        self._send(response)

    def _request(self, path: str, query: str, data: bytes) -> Request:
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, value)
        return Request(
            self.command, path, params, Headers(self.headers.items()), data, self.app.enqueue
        )

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request whose body cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self._send(Response(400, {"error": f"Content-Length {length_text!r} is not a byte count"}), close=True)
            return None
        if length > MAX_BODY_BYTES:
            if length <= _DRAIN_LIMIT:
                # Read the body first: a client still sending when the socket closes sees a reset, not the 413.
                self.rfile.read(length)
            self._too_large(str(length))
            return None
        data = self.rfile.read(length)
        if len(data) < length:
            return self._truncated(len(data), length)
        return data

    def _truncated(self, received: int, promised: int) -> None:
        # The client hung up mid-body: whatever arrived is not what it meant to send.
        self._send(Response(400, {"error": f"request body ended after {received} of {promised} bytes"}), close=True)
        return None

    def _read_chunked(self) -> bytes | None:
        data = bytearray()
        while True:
            line = self.rfile.readline(_MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._send(Response(400, {"error": f"malformed chunk size line {line[:40]!r}"}), close=True)
                return None
            if size == 0:
                while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields are not used
                return bytes(data)
            if len(data) + size > MAX_BODY_BYTES:
                self._too_large(f"more than {len(data) + size}")
                return None
            chunk = self.rfile.read(size)
            data += chunk
            if len(chunk) < size:
                return self._truncated(len(data), len(data) - len(chunk) + size)
            self.rfile.readline(_MAX_LINE)

    def _too_large(self, size: str) -> None:
        self._send(Response(413, {"error": f"request body is {size} bytes; the limit is {MAX_BODY_BYTES}"
                                           " (256 KiB, the SQS message size limit)"}), close=True)

    def _answer_later(self) -> tuple[Callable[[Response], None], threading.Lock]:
        """A function that writes this request's response from another thread, and a lock held until it has."""
        written = threading.Lock()
        written.acquire()
        # What the response depends on, as it is now: this thread may be reading the next request by then.
        request_version, command, requestline = self.request_version, self.command, self.requestline

        def answer(response: Response) -> None:
            try:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s \"%s\" %s", self.address_string(), requestline, response.status)
                self.wfile.write(self._encode(response, request_version, command, close=False))
            except OSError:
                pass  # the client went away; its thread sees the connection closed
            finally:
                written.release()

        return answer, written

    def _wait_for_answer(self) -> None:
        """Wait until an answer written from another thread is out: responses go in request order."""
        written, self._pending = self._pending, None
        if written is not None:
            written.acquire()
            written.release()

    def send_error(self, *args: Any, **kwargs: Any) -> None:
        self._wait_for_answer()
        super().send_error(*args, **kwargs)

    def handle_expect_100(self) -> bool:
        self._wait_for_answer()  # a pipelined request's "100 Continue" must not overtake the answer before it
        return super().handle_expect_100()

    def finish(self) -> None:
        self._wait_for_answer()
        super().finish()

    def _send(self, response: Response, *, close: bool = False) -> None:
        """Write the status line, headers and body in one write (one system call, one release of the GIL)."""
        self._wait_for_answer()
        if logger.isEnabledFor(logging.DEBUG):
            self.log_request(response.status)
        for name, value in (response.headers or {}).items():
            if name.lower() == "connection":
                self.close_connection = value.lower() == "close"
        if close:
            self.close_connection = True
        self.wfile.write(self._encode(response, self.request_version, self.command, close=close))

    def _encode(self, response: Response, request_version: str, command: str, *, close: bool) -> bytes:
        data, headers = response.encode()
        if request_version == "HTTP/0.9":  # no status line and no headers in HTTP/0.9
            return data
        status = response.status
        lines = [
            f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(data)}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")
        return head if command == "HEAD" else head + data

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        logger.debug("%s %s", self.address_string(), format % args)
