"""The core of the host: plugin loading, the message registry, dispatch, batch semantics, context, notify."""
