"""The registry's start-up checks, through in-process plugins."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from host import hookimpl
from host.errors import RegistrationError
from host.core.registry import Registry


class Model(BaseModel):
    x: int


def registering(*args, **kwargs):
    class Plugin:
        __name__ = "acme"

        @hookimpl
        def letsgo_register_messages(self, register):
            register(*args, **kwargs)

    return Plugin()


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("", print), {}, "plugin 'acme' registered an invalid message type '': it must be a non-empty string"),
        (("   ", print), {}, "invalid message type '   '"),
        ((42, print), {}, "invalid message type 42"),
        ((None, print), {}, "invalid message type None"),
        (("Thing", "not a function"), {}, "registered 'Thing' with a handler that is not callable: 'not a function'"),
        (("Thing", print), {"payload": dict}, "registered 'Thing' with payload=<class 'dict'>; expected a pydantic model class or None"),
        (("Thing", print), {"payload": Model(x=1)}, "expected a pydantic model class or None"),
        (("letsgo:contact", print), {}, "types starting with 'letsgo:' are reserved"),
    ],
)
def test_bad_registrations_are_startup_errors(make_worker, args, kwargs, error):
    with pytest.raises(RegistrationError) as raised:
        make_worker(plugins=[registering(*args, **kwargs)], entry_points=False)
    assert error in str(raised.value)


def test_own_distributions_may_use_the_reserved_prefix():
    registry = Registry()
    entry = registry.add("letsgo_stripe", "letsgo-stripe", "letsgo:stripe", print)
    assert registry.get("letsgo:stripe") is entry


def test_lookup_is_by_exact_type_and_listing_is_sorted():
    registry = Registry()
    registry.add("p", None, "b", print)
    registry.add("p", None, "a", print, Model, "first")
    assert registry.get("A") is None and registry.get("toString") is None
    assert [e.type for e in registry] == ["a", "b"]
    assert registry.get("a").payload_schema()["properties"] == {"x": {"title": "X", "type": "integer"}}
    assert registry.get("b").payload_schema() is None


def test_description_defaults_to_the_handler_docstring():
    def handler(message, ctx):
        """Charge the card.

        Long explanation."""

    registry = Registry()
    assert registry.add("p", None, "Charge", handler).description == "Charge the card."


def test_async_callables_are_detected():
    class AsyncCallable:
        async def __call__(self, message, ctx):
            pass

    async def coroutine_function(message, ctx):
        pass

    registry = Registry()
    assert registry.add("p", None, "A", coroutine_function).is_async
    assert registry.add("p", None, "B", AsyncCallable()).is_async
    assert not registry.add("p", None, "C", print).is_async
