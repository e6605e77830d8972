"""The table of Stripe event handlers: which plugin handles which Stripe event type.

Built once per worker from every ``letsgo_stripe_handlers`` implementation, so
each handler is recorded with the plugin that registered it, and kept for that
worker until it stops.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from host import RegistrationError, StartupError

if TYPE_CHECKING:
    from host import Worker

StripeHandler = Callable[..., Any]


class RegisterStripeHandler(Protocol):
    """The ``register`` callback handed to ``letsgo_stripe_handlers``."""

    def __call__(self, event_type: str, handler: StripeHandler) -> None: ...


# A named tuple: a dataclass writes and compiles its methods when it is defined, which every worker's start would pay for.
class HandlerEntry(NamedTuple):
    """One handler of one Stripe event type and where it came from."""

    event_type: str
    handler: StripeHandler
    plugin: str
    distribution: str | None
    is_async: bool

    @property
    def name(self) -> str:
        """The handler's importable name, ``module.qualname``: stable across processes and deploys."""
        module = getattr(self.handler, "__module__", None) or "?"
        qualname = getattr(self.handler, "__qualname__", None) or type(self.handler).__qualname__
        return f"{module}.{qualname}"


def _describe(plugin: str, distribution: str | None) -> str:
    return f"plugin {plugin!r}" + (f" (distribution {distribution!r})" if distribution else "")


class StripeHandlers:
    """Stripe event type -> the handlers registered for it, in registration order."""

    def __init__(self) -> None:
        self._by_type: dict[str, list[HandlerEntry]] = {}

    def registrar(self, plugin: str, distribution: str | None) -> RegisterStripeHandler:
        """A ``register`` callback that stamps every handler with ``plugin``."""

        def register(event_type: str, handler: StripeHandler) -> None:
            self.add(plugin, distribution, event_type, handler)

        return register

    def add(self, plugin: str, distribution: str | None, event_type: Any, handler: Any) -> HandlerEntry:
        """Validate and record one handler; raise :class:`RegistrationError` if it is bad."""
        who = _describe(plugin, distribution)
        if not isinstance(event_type, str) or not event_type.strip() or event_type != event_type.strip():
            raise RegistrationError(
                f"{who} registered a Stripe handler for event type {event_type!r}: "
                "it must be a Stripe event type such as 'invoice.paid'"
            )
        if not callable(handler):
            raise RegistrationError(
                f"{who} registered a Stripe handler for {event_type!r} that is not callable: {handler!r}"
            )
        entry = HandlerEntry(
            event_type=event_type,
            handler=handler,
            plugin=plugin,
            distribution=distribution,
            is_async=inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(getattr(handler, "__call__", None)),
        )
        self._by_type.setdefault(event_type, []).append(entry)
        return entry

    def for_type(self, event_type: str) -> list[HandlerEntry]:
        """The handlers of ``event_type`` (empty when no plugin handles it)."""
        return list(self._by_type.get(event_type, ()))

    def __iter__(self):
        return iter([entry for event_type in sorted(self._by_type) for entry in self._by_type[event_type]])

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_type.values())


def collect_handlers(worker: Worker) -> StripeHandlers:
    """Call every ``letsgo_stripe_handlers`` implementation of ``worker``, one plugin at a time."""
    table = StripeHandlers()
    for impl in worker.implementations("letsgo_stripe_handlers"):
        try:
            impl(register=table.registrar(impl.plugin, impl.distribution))
        except RegistrationError:
            raise
        except Exception as error:
            raise StartupError(
                f"plugin {impl.plugin!r} failed while registering Stripe handlers: {type(error).__name__}: {error}"
            ) from error
    return table


_tables: weakref.WeakKeyDictionary[Worker, StripeHandlers] = weakref.WeakKeyDictionary()
_tables_lock = threading.Lock()


def install(worker: Worker) -> StripeHandlers:
    """Collect ``worker``'s Stripe handlers (at start-up); a registration error stops start-up."""
    table = collect_handlers(worker)
    with _tables_lock:
        _tables[worker] = table
    return table


def forget(worker: Worker) -> None:
    """Drop the handler table of a stopped worker."""
    with _tables_lock:
        _tables.pop(worker, None)


def stripe_handlers(worker: Worker) -> StripeHandlers:
    """Every Stripe handler of ``worker``, with the plugin that registered it (collected now if start-up did not)."""
    with _tables_lock:
        table = _tables.get(worker)
    return table if table is not None else install(worker)
