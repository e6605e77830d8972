"""HTTP routes that plugins add to the local server, through ``letsgo_register_routes``.

A plugin registers ``register("POST", "/stripe/webhook", handler)``; the server
calls ``handler(request)`` in a thread with a :class:`Request` and sends back
the :class:`Response` it returns. ``request.enqueue(message)`` durably stores a
message in the server's queue, so a route can answer only once work is safe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from host.errors import RegistrationError, WorkerError

if TYPE_CHECKING:
    from host.core.worker import Worker

#: Paths the local server serves itself; a plugin cannot take them.
RESERVED_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz"})

#: Methods a route may be registered for.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Headers(Mapping[str, str]):
    """Request headers: a read-only mapping whose keys are case-insensitive."""

    __slots__ = ("_items",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            # Repeated headers are joined, as RFC 9110 allows for list-valued fields.
            items[key] = (items[key][0], f"{items[key][1]}, {value}") if key in items else (name, value)
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class RequestError(WorkerError):
    """A request body could not be read as asked (for example, it is not JSON)."""


@dataclass
class Request:
    """One HTTP request to a plugin route.

    :ivar method: upper-case method, e.g. ``"POST"``
    :ivar path: the path without the query string
    :ivar query: query parameters (the first value of each name)
    :ivar headers: a case-insensitive mapping
    :ivar body: the raw body; Stripe signatures are computed over these exact bytes
    """

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _enqueue: Callable[[dict[str, Any], float], str] | None = field(default=None, repr=False)

    def json(self) -> Any:
        """The body parsed as JSON; raises :class:`RequestError` saying what is wrong."""
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise RequestError(f"request body is not valid JSON: {error}") from None

    def enqueue(self, message: dict[str, Any], delay_seconds: float = 0) -> str:
        """Durably store ``message`` (``{"type", "payload"}``) in the server's queue; return its id.

        The message is on disk when this returns, so a route may then answer
        success. ``delay_seconds`` (0-900) delays its first delivery.
        """
        if self._enqueue is None:
            raise WorkerError("this request has no queue to enqueue to (it was not made through the local server)")
        return self._enqueue(message, delay_seconds)


@dataclass
class Response:
    """What a route handler returns.

    ``body`` may be a dict or list (sent as JSON), a str (sent as UTF-8 text),
    bytes (sent as is) or None (no body). ``headers`` override the defaults,
    including ``Content-Type``.
    """

    status: int = 200
    body: dict[str, Any] | list[Any] | str | bytes | None = None
    headers: dict[str, str] | None = None

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """The body as bytes and the headers to send with it (``Content-Type`` filled in)."""
        if self.body is None:
            data, content_type = b"", None
        elif isinstance(self.body, bytes):
            data, content_type = self.body, "application/octet-stream"
        elif isinstance(self.body, str):
            data, content_type = self.body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(self.body).encode(), "application/json"
        headers = {"Content-Type": content_type} if content_type else {}
        for name, value in (self.headers or {}).items():
            for same in [key for key in headers if key.lower() == name.lower()]:
                del headers[same]
            headers[name] = value
        return data, headers


RouteHandler = Callable[[Request], Response]


class RegisterRoute(Protocol):
    """The ``register`` callback handed to ``letsgo_register_routes``."""

    def __call__(self, method: str, path: str, handler: RouteHandler, *, from_web_pages: bool = False) -> None: ...


@dataclass(frozen=True)
class Route:
    """One registered route and the plugin that registered it."""

    method: str
    path: str
    handler: RouteHandler
    plugin: str
    #: Whether requests a web page could send (an ``Origin`` header, a form or text body) are let through.
    from_web_pages: bool = False


class RouteTable:
    """Routes by (method, path): an O(1) lookup built once at start-up."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Route] = {}

    def registrar(self, plugin: str) -> RegisterRoute:
        """A ``register`` callback that stamps every route with ``plugin``."""

        def register(method: str, path: str, handler: RouteHandler, *, from_web_pages: bool = False) -> None:
            self.add(plugin, method, path, handler, from_web_pages=from_web_pages)

        return register

    def add(self, plugin: str, method: str, path: str, handler: RouteHandler, *, from_web_pages: bool = False) -> None:
        """Add a route; raise :class:`RegistrationError` for a bad or duplicate one.

        By default a route refuses what a web page could send, as ``POST /``
        does (see :func:`host.local.intake.check_sender`), so a page a user
        visits cannot call it; ``from_web_pages=True`` is for a route that
        verifies its caller itself (a signature, a token).
        """
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise RegistrationError(
                f"plugin {plugin!r} registered a route with method {method!r}; use one of {', '.join(sorted(METHODS))}"
            )
        if not isinstance(path, str) or not path.startswith("/") or "?" in path:
            raise RegistrationError(
                f"plugin {plugin!r} registered route path {path!r}; a path starts with '/' and has no query string"
            )
        if path in RESERVED_PATHS:
            raise RegistrationError(f"plugin {plugin!r} registered {path!r}, which the local server serves itself")
        if not callable(handler):
            raise RegistrationError(f"plugin {plugin!r} registered {method} {path} with a handler that is not callable")
        key = (method.upper(), path)
        existing = self._routes.get(key)
        if existing is not None:
            raise RegistrationError(
                f"route {key[0]} {path} is registered twice: by plugin {existing.plugin!r} and by plugin {plugin!r}"
            )
        self._routes[key] = Route(key[0], path, handler, plugin, from_web_pages)

    def match(self, method: str, path: str) -> Route | None:
        """The route for ``method`` and ``path``, or None."""
        return self._routes.get((method, path))

    def allowed(self, path: str) -> list[str]:
        """The methods registered for ``path`` (empty when the path is unknown)."""
        return sorted(method for method, route_path in self._routes if route_path == path)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes)


def collect_routes(worker: Worker) -> RouteTable:
    """Call every ``letsgo_register_routes`` implementation, one plugin at a time."""
    from host.errors import StartupError
    from host.core.plugins import call_impl, implementations

    table = RouteTable()
    for impl in implementations(worker.pm, "letsgo_register_routes"):
        try:
            call_impl(impl, register=table.registrar(impl.plugin_name), worker=worker)
        except RegistrationError:
            raise
        except Exception as error:
            raise StartupError(
                f"plugin {impl.plugin_name!r} failed while registering routes: {type(error).__name__}: {error}"
            ) from error
    return table
