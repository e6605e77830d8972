"""letsgo-worker: a plugin host for SaaS background work on AWS Lambda + SQS and locally.

Plugins import :data:`hookimpl` to implement the hooks of :mod:`host.hookspecs`.
"""

from __future__ import annotations

import pluggy

from host.core.context import Context, MessageContext
from host.core.registry import Message

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def letsgo_register_messages(register): ...``
hookimpl = pluggy.HookimplMarker("letsgo_worker")

__all__ = ["Context", "Message", "MessageContext", "__version__", "hookimpl"]
