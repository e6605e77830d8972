"""Exceptions the host raises; each message names the culprit and what to do."""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every error raised by letsgo-worker."""


class StartupError(WorkerError):
    """The worker cannot start: bad configuration or a faulty plugin (CLI exit status 2)."""


class ConfigError(StartupError):
    """A configuration variable has a bad value; the message names the variable."""


class PluginLoadError(StartupError):
    """A plugin's entry point failed to import."""

    def __init__(self, entry_point: str, distribution: str | None, error: BaseException):
        self.entry_point = entry_point
        self.distribution = distribution
        self.error = error
        dist = f" (distribution {distribution!r})" if distribution else ""
        super().__init__(
            f"Error importing plugin {entry_point!r}{dist}: {type(error).__name__}: {error}"
        )


class RegistrationError(StartupError):
    """A plugin registered something invalid: a duplicate or reserved type, a bad handler."""


class SourceUnavailable(WorkerError):
    """Raised by a message source's ``receive`` when its queue cannot be reached; the source has said so in the log."""


class QueueError(WorkerError):
    """The local queue cannot do what was asked; the message says why."""


class NotificationError(WorkerError):
    """A notification sink failed to deliver; fails the message so that it is retried."""
