"""Messages and the registry of message types: who handles what, built once at start-up."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from host.errors import RegistrationError

P = TypeVar("P")

#: Distributions allowed to register ``letsgo:`` types: this project's own.
OWN_DISTRIBUTIONS = frozenset({"letsgo-worker", "letsgo-stripe", "letsgo-slack"})
RESERVED_PREFIX = "letsgo:"


@dataclass(frozen=True, slots=True)
class Message(Generic[P]):
    """A message as a handler receives it.

    ``payload`` is an instance of the registered pydantic model, or the raw
    JSON value when the type was registered without one.
    """

    type: str
    payload: P
    id: str
    body: dict[str, Any] = field(repr=False)


Handler = Callable[..., Any]


# A named tuple: a dataclass writes and compiles its methods when it is defined, which every Lambda cold start would pay for.
class MessageType(NamedTuple):
    """One registered message type and where it came from."""

    type: str
    handler: Handler
    payload: type | None
    description: str
    plugin: str
    distribution: str | None
    is_async: bool

    def payload_schema(self) -> dict[str, Any] | None:
        """The payload's JSON Schema, or None when any payload is accepted."""
        return self.payload.model_json_schema() if self.payload is not None else None


class Register(Protocol):
    """The ``register`` callback handed to ``letsgo_register_messages``."""

    def __call__(
        self, type: str, handler: Handler, payload: type | None = None, description: str = ""
    ) -> None: ...


def _describe(plugin: str, distribution: str | None) -> str:
    return f"plugin {plugin!r}" + (f" (distribution {distribution!r})" if distribution else "")


class Registry:
    """The routing table: message type -> :class:`MessageType`, an O(1) lookup."""

    def __init__(self) -> None:
        self._types: dict[str, MessageType] = {}

    def registrar(self, plugin: str, distribution: str | None) -> Register:
        """Return a ``register`` callback that stamps every type with ``plugin``."""

        def register(
            type: str, handler: Handler, payload: type | None = None, description: str = ""
        ) -> None:
            self.add(plugin, distribution, type, handler, payload, description)

        return register

    def add(
        self,
        plugin: str,
        distribution: str | None,
        type_: Any,
        handler: Any,
        payload: Any = None,
        description: str = "",
    ) -> MessageType:
        """Validate and record one registration; raise :class:`RegistrationError` if it is bad."""
        who = _describe(plugin, distribution)
        if not isinstance(type_, str) or not type_.strip():
            raise RegistrationError(f"{who} registered an invalid message type {type_!r}: it must be a non-empty string")
        if type_.startswith(RESERVED_PREFIX) and distribution not in OWN_DISTRIBUTIONS:
            raise RegistrationError(
                f"{who} registered {type_!r}, but types starting with {RESERVED_PREFIX!r} are reserved "
                "for letsgo-worker's own plugins; choose another name"
            )
        if not callable(handler):
            raise RegistrationError(f"{who} registered {type_!r} with a handler that is not callable: {handler!r}")
        if payload is not None and not (isinstance(payload, type) and hasattr(payload, "model_validate")):
            raise RegistrationError(f"{who} registered {type_!r} with payload={payload!r}; expected a pydantic model class or None")
        existing = self._types.get(type_)
        if existing is not None:
            raise RegistrationError(
                f"message type {type_!r} is registered twice: by {_describe(existing.plugin, existing.distribution)} "
                f"and by {who}; disable one of them with LETSGO_WORKER_DISABLE_PLUGINS"
            )
        entry = MessageType(
            type=type_,
            handler=handler,
            payload=payload,
            description=description or (inspect.getdoc(handler) or "").split("\n", 1)[0],
            plugin=plugin,
            distribution=distribution,
            is_async=inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(getattr(handler, "__call__", None)),
        )
        self._types[type_] = entry
        return entry

    def get(self, type_: str) -> MessageType | None:
        """The registration of ``type_``, or None when no plugin handles it."""
        return self._types.get(type_)

    def __iter__(self):
        return iter(sorted(self._types.values(), key=lambda entry: entry.type))

    def __len__(self) -> int:
        return len(self._types)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._types
