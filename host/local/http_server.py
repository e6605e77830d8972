"""The local server: uvicorn, with the httptools parser (llhttp, Node's parser), serving :class:`LocalApp`.

One event loop, on a thread of its own, reads every request and writes every
answer; the queue's writer thread (:mod:`host.local.writer`) only writes to
SQLite, and delivery runs on threads or processes of its own, so a handler that
blocks never holds up ``POST /`` or ``/healthz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from uvicorn import Config, Server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from host.errors import StartupError
from host.local.app import LocalApp
from host.local.routes import RouteTable

if TYPE_CHECKING:
    from host.local.queue import LocalQueue

logger = logging.getLogger("letsgo.http")

#: Limits on the request head (http.client's): a longer header line or more header lines get 431.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100

#: Connections served at once; past it a request is answered 503 (each connection costs a file descriptor).
MAX_CONNECTIONS = 4096

#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_SECONDS = 120

#: Seconds a client has to send a request's line and headers once it has connected or begun it.
HEAD_TIMEOUT_SECONDS = 30.0


class _HeadTooLarge(Exception):
    """Raised from a parser callback, so that llhttp stops reading the head."""


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request head bounded in size and in time.

    llhttp itself has no limit on a head's size, and uvicorn none on how long a
    client may take to send it: without one, slow clients that never finish a
    request (a slowloris) would hold connections until the cap is reached.
    """

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_problem: tuple[int, str] | None = None
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        logger.debug("closing a connection whose request head did not arrive within %gs", HEAD_TIMEOUT_SECONDS)
        self.transport.close()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_HEADER_LINE:
            self._refuse_head(414, f"the request target is longer than {MAX_HEADER_LINE} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_LINE:
            self._refuse_head(431, f"a header line is longer than {MAX_HEADER_LINE} bytes")
        if len(self.headers) >= MAX_HEADERS:
            self._refuse_head(431, f"more than {MAX_HEADERS} header lines")
        super().on_header(name, value)

    def _refuse_head(self, status: int, problem: str) -> None:
        self._head_problem = (status, problem)
        raise _HeadTooLarge(problem)

    def eof_received(self) -> bool:
        """The client has sent all it will (a half-close): answer what it sent, then close.

        asyncio's default, closing at once, would drop the answers still being made.
        """
        last = self.pipeline[0][0] if self.pipeline else self.cycle
        if last is None or last.response_complete or last.more_body:
            return False  # nothing to answer, or a body cut short that can never be answered
        last.keep_alive = False
        return True

    def send_400_response(self, msg: str) -> None:
        """Answer a request llhttp could not read: 414 or 431 for an oversized head, else 400, as JSON."""
        status, text = getattr(self, "_head_problem", None) or (400, "malformed HTTP/1.1 request, refused (RFC 9112)")
        body = json.dumps({"error": text}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, HTTPStatus(status).phrase.encode(), len(body), body)
        )
        self.transport.close()


class LocalServer:
    """The HTTP server of ``letsgo-worker serve``, on a daemon thread of its own.

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
        probes: dict[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> None:
        self.app = LocalApp(queue=queue, routes=routes, enqueue=enqueue, health=health, intake_note=intake_note,
                            probes=probes)
        self._socket = _listen(host, port)
        self._server = Server(
            Config(
                self.app, http=_BoundedProtocol, loop="asyncio", lifespan="off", interface="asgi3",
                log_config=None, log_level="warning", access_log=False, server_header=False, date_header=True,
                limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_SECONDS,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def routes(self) -> RouteTable:
        """The plugins' routes (set once plugins have registered them)."""
        return self.app.routes

    @routes.setter
    def routes(self, table: RouteTable) -> None:
        self.app.routes = table

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host = self._socket.getsockname()[0]
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> LocalServer:
        """Serve on a background thread; return once the server accepts connections."""
        self._thread = threading.Thread(target=self._serve, name="letsgo-http", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started:
            raise StartupError("the HTTP server did not start; see the log above")
        return self

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def stop(self) -> None:
        """Stop accepting, let requests being answered finish, then close the socket."""
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
        self._socket.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, bound now so that a taken port is a clear start-up error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
    except OSError as error:
        raise StartupError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; pass --port (or set PORT) to use another port"
        ) from None
    sock.setblocking(False)
    return sock
