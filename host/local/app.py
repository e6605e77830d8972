"""The local server's ASGI app: ``POST /`` intake, ``GET /healthz``, the dashboard and plugin routes.

HTTP itself (framing, keep-alive, pipelining, ``Expect: 100-continue``) is
uvicorn's, parsed by httptools (llhttp); see :mod:`host.local.http_server`.
This app sees whole requests: it reads the body up to the size limit, refuses
what a web page could send, hands intake to the queue (whose writer commits the requests
waiting together) and answers 201 once the messages are on disk.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from host.local.intake import MAX_REQUEST_BYTES, IntakeError, check_sender, parse_intake
from host.local.routes import Headers, Request, RequestError, Response, RouteTable

if TYPE_CHECKING:
    from host.local.queue import LocalQueue
    from host.ops.web import OpsWeb

logger = logging.getLogger("letsgo.http")

#: Bodies up to this size are read before a 413 is sent, so that a client still sending
#: sees the answer rather than a reset connection; past it the connection is closed.
_DRAIN_LIMIT = 2 * MAX_REQUEST_BYTES


class _BodyTooLarge(Exception):
    def __init__(self, size: str) -> None:
        self.size = size


class _ClientGone(Exception):
    """The client hung up before its whole body arrived: what came is not what it meant to send."""


class LocalApp:
    """The ASGI app of ``letsgo-worker serve``.

    :param queue: stores ``POST /`` messages, or None when messages come from
        elsewhere (``serve --sqs``); then ``POST /`` answers 404 with ``intake_note``.
    :param routes: the plugins' routes.
    :param enqueue: what ``request.enqueue`` of a plugin route calls.
    :param health: returns the JSON of ``GET /healthz`` (called in a thread).
    :param probes: more such paths (``/livez``, ``/readyz``), each answering 200
        when its JSON has ``"status": "ok"``, else 503.

    ``ops``, set once the worker has started, answers ``/dashboard...`` and
    ``/metrics`` (:class:`host.ops.web.OpsWeb`); None leaves them to plugin routes (404).
    """

    def __init__(
        self,
        *,
        queue: LocalQueue | None,
        routes: RouteTable | None = None,
        enqueue: Callable[[dict[str, Any], float], str] | None = None,
        health: Callable[[], dict[str, Any]] | None = None,
        intake_note: str = "this server does not accept messages",
        probes: dict[str, Callable[[], dict[str, Any]]] | None = None,
    ) -> None:
        self.queue = queue
        self.routes = routes or RouteTable()
        self.enqueue = enqueue
        self.health = health or (lambda: {"status": "ok"})
        self.intake_note = intake_note
        self.probes = {"/healthz": lambda: self.health(), **(probes or {})}
        self.ops: OpsWeb | None = None

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        problem = _framing_problem(scope)
        if problem:
            await _send(send, Response(400, {"error": problem}, {"Connection": "close"}))
            return
        headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"])
        try:
            body = await _read_body(receive, headers)
        except _ClientGone:
            return
        except _BodyTooLarge as error:
            response = Response(
                413, {"error": f"request body is {error.size} bytes; the limit is {MAX_REQUEST_BYTES} bytes per"
                               " request (ten messages of 256 KiB, the SQS message size limit, and their framing)"},
                {"Connection": "close"},
            )
        else:
            response = await self._respond(scope, headers, body)
        await _send(send, response)

    async def _respond(self, scope: dict[str, Any], headers: Headers, body: bytes) -> Response:
        method, path = scope["method"], scope["path"]
        if path == "/":
            if method != "POST":
                return _not_allowed(method, path, ["POST"])
            return await self.intake(body, headers)
        if path in self.probes:
            if method not in ("GET", "HEAD"):
                return _not_allowed(method, path, ["GET"])
            health = await asyncio.to_thread(self.probes[path])
            return Response(200 if health.get("status") == "ok" else 503, health)
        if self.ops is not None and self.ops.serves(path):
            return await self.ops.respond(self._request(scope, headers, body))
        return await self.route(self._request(scope, headers, body))

    async def intake(self, body: bytes, headers: Headers) -> Response:
        """``POST /``: store the messages, answer 201 with their ids once they are on disk."""
        if self.queue is None:
            return Response(404, {"error": self.intake_note})
        try:
            check_sender(headers)
            messages, delay = parse_intake(body, typed="Content-Type" in headers)
        except IntakeError as error:
            return Response(error.status, {"error": error.message})
        try:
            ids = await self.queue.store(messages, delay)
        except Exception as error:
            logger.error("could not store %d message(s)", len(messages), exc_info=error)
            return Response(503, {"error": f"the local queue could not store the message: {error}"}, {"Retry-After": "1"})
        if len(ids) == 1:
            return Response(201, {"messageId": ids[0], "messageIds": ids})
        return Response(201, {"messageIds": ids})

    async def route(self, request: Request) -> Response:
        """A plugin route, run in a thread, or 404/405."""
        route = self.routes.match(request.method, request.path)
        if route is None:
            allowed = self.routes.allowed(request.path)
            if allowed:
                return _not_allowed(request.method, request.path, allowed)
            return Response(404, {"error": f"no route for {request.method} {request.path}"})
        if not route.from_web_pages:
            try:
                check_sender(request.headers)
            except IntakeError as error:
                return Response(error.status, {"error": error.message})
        try:
            response = await asyncio.to_thread(route.handler, request)
        except RequestError as error:  # request.json() on a body that is not JSON: the client's mistake
            return Response(400, {"error": str(error)})
        except Exception as error:
            logger.exception("route %s %s of plugin %r failed", route.method, route.path, route.plugin)
            return Response(500, {"error": f"route {route.method} {route.path} of plugin {route.plugin!r} failed: {type(error).__name__}: {error}"})
        if not isinstance(response, Response):
            logger.error("route %s %s of plugin %r returned %r, not a Response", route.method, route.path, route.plugin, response)
            return Response(500, {"error": f"route {route.method} {route.path} of plugin {route.plugin!r} did not return a Response"})
        return response

    def _request(self, scope: dict[str, Any], headers: Headers, body: bytes) -> Request:
        query: dict[str, str] = {}
        for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            query.setdefault(name, value)
        return Request(scope["method"], scope["path"], query, headers, body, self.enqueue)


#: A Host field value: a name, an IPv4 address or a bracketed IPv6 literal, then an optional port (RFC 3986).
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?")


def _framing_problem(scope: dict[str, Any]) -> str | None:
    """What RFC 9112 makes a server refuse that llhttp lets through, or None."""
    version = scope["http_version"]
    if version not in ("1.0", "1.1"):
        return f"HTTP/{version} is not served; send HTTP/1.1"
    hosts = [value for name, value in scope["headers"] if name == b"host"]
    if version == "1.1" and not hosts:
        return "an HTTP/1.1 request must have a Host header (RFC 9112, section 3.2)"
    if len(hosts) > 1:
        return "a request must have one Host header, not several (RFC 9112, section 3.2)"
    if hosts and not _HOST.fullmatch(hosts[0]):
        return f"the Host header {hosts[0][:100].decode('latin-1')!r} is not a host name (RFC 9112, section 3.2)"
    if version == "1.0" and any(name == b"transfer-encoding" for name, _ in scope["headers"]):
        return "an HTTP/1.0 request cannot have a Transfer-Encoding (RFC 9112, section 6.1)"
    return None


async def _read_body(receive: Callable, headers: Headers) -> bytes:
    """The whole request body; :class:`_BodyTooLarge` past :data:`MAX_REQUEST_BYTES` (each message is checked by intake)."""
    length = headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > _DRAIN_LIMIT:
        raise _BodyTooLarge(length)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        size += len(message.get("body", b""))
        if size > _DRAIN_LIMIT:
            raise _BodyTooLarge(f"more than {MAX_REQUEST_BYTES}")
        if size <= MAX_REQUEST_BYTES:
            chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    if size > MAX_REQUEST_BYTES:
        raise _BodyTooLarge(length or f"more than {MAX_REQUEST_BYTES}")
    return b"".join(chunks)


async def _send(send: Callable, response: Response) -> None:
    data, headers = response.encode()
    raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    raw_headers.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": data})


def _not_allowed(method: str, path: str, allowed: list[str]) -> Response:
    return Response(
        405, {"error": f"method {method} is not allowed on {path}; use {', '.join(allowed)}"},
        {"Allow": ", ".join(allowed)},
    )
