"""letsgo-worker: a plugin host for SaaS background work on AWS Lambda + SQS and locally.

This package is the public API, what plugins and apps import (everything under
``host.*`` may move). Plugins import :data:`hookimpl` to implement the hooks
of :mod:`host.hookspecs`, and declare their configuration with
:class:`Setting`.

``host`` is imported on the Lambda cold-start path, so names whose module is
costly to import (the worker, routes, the idempotency store) are loaded on
first use (PEP 562); every name is in ``__all__`` either way.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from host.config import (
    RegisterSetting,
    Setting,
    Settings,
    comma_list,
    flag,
    int_between,
    optional,
    seconds,
)
from host.core.context import Context, MessageContext
from host.core.registry import Message
from host.errors import ConfigError, NotificationError, RegistrationError, StartupError, WorkerError

if TYPE_CHECKING:
    from host.core.dispatch import Outcome, Status
    from host.core.notify import Notification
    from host.core.worker import Worker
    from host.local.routes import Request, Response
    from host.services.api import AccessTokenError, ApiError, api_client, async_api_client, get_access_token
    from host.services.enqueue import EnqueueError, InvalidMessageError, enqueue, enqueue_async
    from host.services.idempotency import IdempotencyError, IdempotencyStore
    from host.services.idempotency import get_store as idempotency_store
    from host.services.mrkdwn import escape as escape_mrkdwn
    from host.services.run_once import IdempotencyInProgressError, idempotent, run_once
    from host.services.mrkdwn import escape_line as escape_mrkdwn_line

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def letsgo_register_messages(register): ...``
hookimpl = pluggy.HookimplMarker("letsgo_worker")
#: Marker for hook specifications, for a plugin that adds hooks of its own (see ``letsgo_add_hookspecs``).
hookspec = pluggy.HookspecMarker("letsgo_worker")

#: Name -> (module, attribute) of the names loaded on first use.
_LAZY = {
    "AccessTokenError": ("host.services.api", "AccessTokenError"),
    "ApiError": ("host.services.api", "ApiError"),
    "EnqueueError": ("host.services.enqueue", "EnqueueError"),
    "IdempotencyError": ("host.services.idempotency", "IdempotencyError"),
    "IdempotencyInProgressError": ("host.services.run_once", "IdempotencyInProgressError"),
    "IdempotencyStore": ("host.services.idempotency", "IdempotencyStore"),
    "InvalidMessageError": ("host.services.enqueue", "InvalidMessageError"),
    "Notification": ("host.core.notify", "Notification"),
    "Outcome": ("host.core.dispatch", "Outcome"),
    "Status": ("host.core.dispatch", "Status"),
    "Request": ("host.local.routes", "Request"),
    "Response": ("host.local.routes", "Response"),
    "Worker": ("host.core.worker", "Worker"),
    "api_client": ("host.services.api", "api_client"),
    "async_api_client": ("host.services.api", "async_api_client"),
    "enqueue": ("host.services.enqueue", "enqueue"),
    "enqueue_async": ("host.services.enqueue", "enqueue_async"),
    "get_access_token": ("host.services.api", "get_access_token"),
    "escape_mrkdwn": ("host.services.mrkdwn", "escape"),
    "escape_mrkdwn_line": ("host.services.mrkdwn", "escape_line"),
    "idempotency_store": ("host.services.idempotency", "get_store"),
    "idempotent": ("host.services.run_once", "idempotent"),
    "run_once": ("host.services.run_once", "run_once"),
}

__all__ = [
    "AccessTokenError",
    "ApiError",
    "ConfigError",
    "Context",
    "EnqueueError",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyStore",
    "InvalidMessageError",
    "Message",
    "MessageContext",
    "Notification",
    "NotificationError",
    "Outcome",
    "RegisterSetting",
    "RegistrationError",
    "Request",
    "Response",
    "Setting",
    "Settings",
    "StartupError",
    "Status",
    "Worker",
    "WorkerError",
    "__version__",
    "api_client",
    "async_api_client",
    "comma_list",
    "enqueue",
    "enqueue_async",
    "escape_mrkdwn",
    "escape_mrkdwn_line",
    "flag",
    "get_access_token",
    "hookimpl",
    "hookspec",
    "idempotency_store",
    "idempotent",
    "int_between",
    "optional",
    "run_once",
    "seconds",
]


def __getattr__(name: str) -> Any:
    """Import a name of :data:`_LAZY` on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'host' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not."""
    return sorted(set(globals()) | set(__all__))
