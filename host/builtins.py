"""The host's built-in plugin: LetsGo's own message types.

Registered through the ``letsgo_worker`` entry-point group exactly like a
third-party plugin (the host dog-foods its hooks).
"""

from __future__ import annotations

from host import hookimpl


@hookimpl
def letsgo_register_messages(register):
    """Register LetsGo's built-in types (``letsgo:contact``, ``letsgo:tenant:new``, ``letsgo:tenant:deleted``)."""
