"""The dashboard and ``/metrics`` over HTTP: ``GET /dashboard...`` pages, action POSTs, ``GET /metrics``.

:class:`OpsWeb` answers the requests of the local server's app
(:class:`host.local.app.LocalApp` hands it every path it :meth:`~OpsWeb.serves`),
under ``serve`` with the local queue's inspector and under
``letsgo-worker dashboard --sqs`` with the SQS one: one set of pages for both.
Pages are rendered on the server by Jinja2 (autoescaped) from the views of
:mod:`host.ops.dashboard`; the CSS, the little JavaScript and the chart ship in
the package, so the dashboard works offline. Every check of
:mod:`host.ops.security` runs before a view does. Jinja2 and prometheus-client
are imported at the first request, never by a server that nobody looks at.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from host.errors import QueueError
from host.local.routes import Request, Response
from host.ops import dashboard
from host.ops.inspector import STATES, Inspector, check_state
from host.ops.security import CSRF_FIELD, SECURITY_HEADERS, SESSION_COOKIE, Guard, Refusal

if TYPE_CHECKING:
    from host.core.worker import Worker

logger = logging.getLogger("letsgo.dashboard")

#: The assets under ``/dashboard/static/`` and their types; nothing else is served from the package.
STATIC_FILES = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: What the notice after an action says, by action (the count is filled in).
NOTICES = {
    "redrive": "{count} message(s) sent back to the queue.",
    "delete": "{count} message(s) deleted.",
    "purge": "{count} dead letter(s) purged.",
}


class OpsWeb:
    """The dashboard pages, their actions and ``/metrics``.

    :param inspector: the queue looked into; None when there is none (then the pages say so).
    :param guard: the token, same-origin, CSRF and read-only checks.
    :param worker: the started worker, for the plugins, types and load problems.
    :param schedules: returns the schedules to show (:func:`host.ops.dashboard.configured_schedules`).
    """

    def __init__(self, inspector: Inspector | None, *, guard: Guard, worker: Worker | None = None,
                 schedules: Callable[[], list[dashboard.ScheduleInfo]] = list) -> None:
        self.inspector = inspector
        self.guard = guard
        self.worker = worker
        self.schedules = schedules
        self._templates = None

    def close(self) -> None:
        """Let the inspector go (its read connection); the queue itself is its owner's to close."""
        close = getattr(self.inspector, "close", None)
        if close is not None:
            close()

    @staticmethod
    def serves(path: str) -> bool:
        """Whether ``path`` is this app's: ``/metrics``, ``/dashboard`` and below."""
        return path == "/metrics" or path == "/dashboard" or path.startswith("/dashboard/")

    async def respond(self, request: Request) -> Response:
        """Answer one request, in a thread: inspectors block (SQLite reads, SQS calls), the event loop must not."""
        return await asyncio.to_thread(self.handle, request)

    def handle(self, request: Request) -> Response:
        """Answer one request (blocking). A client's mistake is a 4xx page, never a 5xx."""
        try:
            return self._route(request)
        except _Problem as problem:
            return self._error(request, problem.status, problem.message)
        except Exception as error:  # the queue's fault, not the client's: say so, keep serving
            logger.exception("dashboard request %s %s failed", request.method, request.path)
            return self._error(request, 503, f"the queue could not be read or changed: {type(error).__name__}: {error}")

    # -- routing --------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path.startswith("/dashboard/static/"):
            _allow(request, "GET", "HEAD")
            return self._static(path.removeprefix("/dashboard/static/"))
        if path == "/dashboard/login":
            return self._login(request)
        refusal = self.guard.authenticate(request.headers)
        if refusal is not None:
            if refusal.status == 401 and method == "GET" and path != "/metrics" and not _wants_json(request):
                return _redirect("/dashboard/login")
            return self._error(request, refusal.status, refusal.message)
        if path == "/metrics":
            _allow(request, "GET", "HEAD")
            return self._metrics(request)
        if path.startswith("/dashboard/actions/"):
            return self._action(request, path.removeprefix("/dashboard/actions/"))
        if path == "/dashboard/logout":
            _allow(request, "POST")
            return self._logout(request)
        _allow(request, "GET", "HEAD")
        pages = {
            "/dashboard": self._overview,
            "/dashboard/": self._overview,
            "/dashboard/messages": self._messages,
            "/dashboard/message": self._message,
            "/dashboard/purge": self._purge_confirmation,
            "/dashboard/plugins": self._plugins,
            "/dashboard/schedules": self._schedules,
            "/dashboard/api/overview": self._overview_json,
        }
        page = pages.get(path)
        if page is None:
            raise _Problem(404, f"no dashboard page at {path}; start at /dashboard")
        return page(request)

    # -- pages ----------------------------------------------------------------------------

    def _overview(self, request: Request) -> Response:
        return self._page(request, "overview.html", "overview", dashboard.overview(self.inspector, self.worker))

    def _overview_json(self, request: Request) -> Response:
        stats = self.inspector.stats() if self.inspector is not None else None
        return _json(200, {"stats": None if stats is None else stats.to_json(),
                           "oldest": dashboard.age_text(stats.oldest_age_seconds) if stats else None})

    def _messages(self, request: Request) -> Response:
        inspector = self._need_inspector()
        state = _state(request.query.get("state", "visible"))
        offset = _offset(request.query.get("offset", "0"))
        view = dashboard.messages_page(inspector, state, type=request.query.get("type"),
                                       text=request.query.get("text"), offset=offset)
        view["notice"] = _notice(request.query)
        view["query"] = {"state": state, "type": view["type"], "text": view["text"]}
        return self._page(request, "messages.html", "messages", view)

    def _message(self, request: Request) -> Response:
        inspector = self._need_inspector()
        state = _state(request.query.get("state", "dead_letter"))
        message_id = request.query.get("id", "")
        if not message_id:
            raise _Problem(400, "say which message: /dashboard/message?state=STATE&id=MESSAGE_ID")
        found = inspector.message(state, message_id)
        if found is None:
            raise _Problem(404, f"no message {message_id!r} among the {dashboard.STATE_LABELS[state].lower()} "
                                "(it may have been delivered, redriven or deleted since)")
        view = dashboard.message_detail(found)
        view["peek_note"] = inspector.peek_note
        return self._page(request, "message.html", "messages", view)

    def _purge_confirmation(self, request: Request) -> Response:
        inspector = self._need_inspector()
        return self._page(request, "purge.html", "messages", {"stats": inspector.stats()})

    def _plugins(self, request: Request) -> Response:
        return self._page(request, "plugins.html", "plugins", dashboard.plugins_page(self.worker))

    def _schedules(self, request: Request) -> Response:
        ticks = self.inspector.last_ticks() if self.inspector is not None else []
        return self._page(request, "schedules.html", "schedules", dashboard.schedules_page(self.schedules(), ticks))

    # -- actions --------------------------------------------------------------------------

    def _action(self, request: Request, action: str) -> Response:
        _allow(request, "POST")
        form = _form(request)
        refusal = self.guard.check_action(request.headers, form)
        if refusal is not None:
            return self._error(request, refusal.status, refusal.message)
        inspector = self._need_inspector()
        ids = [value for value in form.get("ids", []) if value]
        back = {"state": "dead_letter"}
        if action == "redrive":
            if form.get("all", [""])[0] == "1":
                count = _queue_call(inspector.redrive, None, status=409)
            elif ids:
                count = _queue_call(inspector.redrive, ids)
            else:
                raise _Problem(400, "choose the messages to redrive (or redrive all)")
            method = getattr(inspector, "redrive_method", None)  # SQS: a message-move task, or one by one
            if method:
                back["via"] = "task" if "StartMessageMoveTask" in method else "message"
        elif action == "delete":
            state = _state(form.get("state", [""])[0])
            if not ids:
                raise _Problem(400, "say which message to delete")
            count = _queue_call(inspector.delete, state, ids)
            back = {"state": state}
        elif action == "purge":
            if form.get("confirm", [""])[0] != "purge":
                raise _Problem(400, "purging deletes every dead letter: confirm it on /dashboard/purge")
            count = _queue_call(inspector.purge_dead_letters, status=409)
        else:
            raise _Problem(404, f"no dashboard action {action!r}; the actions are redrive, delete and purge")
        logger.info("dashboard: %s of %d message(s)", action, count)
        if _wants_json(request):
            return _json(200, {"action": action, "count": count, "via": getattr(inspector, "redrive_method", None)})
        return _redirect("/dashboard/messages?" + urlencode({**back, "done": action, "count": count}))

    # -- login ----------------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        _allow(request, "GET", "HEAD", "POST")
        if not self.guard.needs_login:
            refusal = self.guard.authenticate(request.headers)
            if refusal is not None:
                return self._error(request, refusal.status, refusal.message)
            return _redirect("/dashboard")
        failed = None
        if request.method == "POST":
            refusal = self.guard.same_origin(request.headers)
            if refusal is not None:
                return self._error(request, refusal.status, refusal.message)
            if self.guard.token_matches(_form(request).get("token", [""])[0]):
                cookie = f"{SESSION_COOKIE}={self.guard.session_value()}; Path=/; HttpOnly; SameSite=Strict"
                return _redirect("/dashboard", {"Set-Cookie": cookie})
            failed = "That is not the dashboard's token."
        return self._page(request, "login.html", "login", {"failed": failed}, status=401 if failed else 200,
                          anonymous=True)

    def _logout(self, request: Request) -> Response:
        refusal = self.guard.same_origin(request.headers)
        if refusal is not None:
            return self._error(request, refusal.status, refusal.message)
        return _redirect("/dashboard/login", {"Set-Cookie": f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"})

    # -- metrics and assets ---------------------------------------------------------------

    def _metrics(self, request: Request) -> Response:
        from host.ops.metrics import metrics_response

        status, headers, body = metrics_response(self.inspector, accept=request.headers.get("Accept"))
        return Response(status, body, {**dict(headers), "Cache-Control": "no-store"})

    def _static(self, name: str) -> Response:
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            raise _Problem(404, f"no dashboard asset {name!r}")
        data = resources.files("host.ops").joinpath("static", name).read_bytes()
        return Response(200, data, {"Content-Type": content_type, "Cache-Control": "max-age=3600",
                                    "X-Content-Type-Options": "nosniff"})

    # -- rendering ------------------------------------------------------------------------

    def _need_inspector(self) -> Inspector:
        if self.inspector is None:
            raise _Problem(404, "this server has no queue to look into")
        return self.inspector

    def _environment(self):
        if self._templates is None:
            import jinja2

            folder = str(resources.files("host.ops").joinpath("templates"))
            self._templates = jinja2.Environment(
                loader=jinja2.FileSystemLoader(folder), autoescape=True,
                undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            )
            self._templates.filters["age"] = dashboard.age_text
            self._templates.filters["when"] = dashboard.when
        return self._templates

    def _page(self, request: Request, template: str, section: str, view: dict[str, Any], *,
              status: int = 200, anonymous: bool = False) -> Response:
        context = {
            "section": section,
            "title": self.inspector.name if self.inspector is not None else "letsgo-worker",
            "inspector": self.inspector,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.guard.csrf_token,
            "read_only": self.guard.read_only,
            "logged_in": self.guard.needs_login and not anonymous,
            "states": STATES,
            "labels": dashboard.STATE_LABELS,
            **view,
        }
        html = self._environment().get_template(template).render(context)
        return Response(status, html, {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS})

    def _error(self, request: Request, status: int, message: str) -> Response:
        if _wants_json(request) or request.path == "/metrics":
            return _json(status, {"error": message})
        try:
            return self._page(request, "error.html", "error", {"status": status, "message": message},
                              status=status, anonymous=True)
        except Exception:  # a template that cannot render must not hide the answer
            logger.exception("the dashboard's error page could not be rendered")
            return Response(status, message, dict(SECURITY_HEADERS))


class _Problem(Exception):
    """A request the dashboard cannot answer as asked: its status and what to do instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise _Problem(405, f"method {request.method} is not allowed on {request.path}; use {', '.join(methods)}")


def _state(text: str):
    try:
        return check_state(text)
    except ValueError as error:
        raise _Problem(400, str(error)) from None


def _offset(text: str) -> int:
    if not text.isdigit() or int(text) > 10_000_000:
        raise _Problem(400, f"offset {text[:20]!r} is not a whole number of messages")
    return int(text)


def _queue_call(call: Callable[..., int], *args: Any, status: int = 404) -> int:
    """An inspector action; its :class:`QueueError` (an id that is not there: 404; no dead-letter queue: 409)
    is answered with ``status`` and the error's words, not as a failure of the server."""
    try:
        return call(*args)
    except QueueError as error:
        raise _Problem(status, str(error)) from None


def _form(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise _Problem(415, f"a dashboard action is a form (application/x-www-form-urlencoded), not {content_type[:60]}")
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


#: How an SQS redrive moved the messages, by the ``via`` of the notice.
VIAS = {"task": " (by an SQS message-move task)", "message": " (one message at a time)"}


def _notice(query: dict[str, str]) -> str | None:
    template = NOTICES.get(query.get("done", ""))
    count = query.get("count", "")
    if not template or not count.isdigit():
        return None
    return template.format(count=int(count)).removesuffix(".") + VIAS.get(query.get("via", ""), "") + "."


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("Accept", "")
    return request.path.startswith("/dashboard/api/") or ("application/json" in accept and "text/html" not in accept)


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(status, json.dumps(body).encode(), {"Content-Type": "application/json", **SECURITY_HEADERS})


def _redirect(location: str, headers: dict[str, str] | None = None) -> Response:
    return Response(303, None, {"Location": location, "Cache-Control": "no-store", **(headers or {})})


def build(inspector: Inspector | None, worker: Worker | None, *, host: str, token: str | None,
          read_only: bool, running_schedule=None) -> OpsWeb:
    """The dashboard of a server bound to ``host``: its guard, and schedules from ``worker``'s settings.

    ``serve`` and ``letsgo-worker dashboard`` both build theirs here.
    """
    from host.local.runtime import is_loopback

    guard = Guard(token=token, loopback=is_loopback(host), read_only=read_only)

    def schedules() -> list[dashboard.ScheduleInfo]:
        if worker is None:
            return []
        # worker.schedules: the named schedules of the plugins (letsgo_register_schedules), where the host has them.
        return dashboard.configured_schedules(worker.settings, running_schedule, getattr(worker, "schedules", ()))

    return OpsWeb(inspector, guard=guard, worker=worker, schedules=schedules)
