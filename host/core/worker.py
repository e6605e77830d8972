"""The worker: plugins loaded, message types registered, ready to dispatch. One per process."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from host.config import SETTINGS, Setting, Settings, load_dotenv_file
from host.errors import RegistrationError, StartupError
from host.core.notify import Notification, anyone_to_tell, deliver, deliver_async
from host.core.plugins import (
    Implementation,
    PluginInfo,
    PluginProblem,
    hooks_of,
    implementations,
    load_entry_point_plugins,
    new_plugin_manager,
)
from host.core.registry import Registry
from host.core.schedules import ScheduleRegistry

if TYPE_CHECKING:
    from host.core.handler_pool import HandlerPool
    from host.services.enqueue import Enqueuer

logger = logging.getLogger("letsgo.worker")

_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Worker:
    """Plugins, the message registry and shared resources of one worker process.

    Build it with :func:`get_worker` (lazy, once per process) or directly in tests::

        worker = Worker(Settings.from_env({}), plugins=[MyPlugin()]).start()
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Iterable[Any] = (),
        load_entry_points: bool = True,
        entry_points_file: str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.pm = new_plugin_manager()
        self.registry = Registry()
        #: The named schedules plugins registered with ``letsgo_register_schedules``.
        self.schedules = ScheduleRegistry()
        self.plugins: list[PluginInfo] = []
        self.problems: list[PluginProblem] = []
        #: The settings each plugin declared through ``letsgo_register_settings``, by plugin name.
        self.plugin_settings: dict[str, list[Setting]] = {}
        self._extra_plugins = list(plugins)
        self._load_entry_points = load_entry_points
        #: Written by ``letsgo-worker plugins --freeze``: read instead of scanning while it is current.
        self.entry_points_file = entry_points_file
        self._executor: HandlerPool | None = None
        self._executor_lock = threading.Lock()
        self.started = False
        #: The local runtime's queue file, set by ``serve``; the idempotency store lives beside it.
        self.local_db_path: str | None = None
        #: Where :meth:`enqueue` sends messages: set by the runtime (the local queue under ``serve``,
        #: the SQS queue under ``serve --sqs``); None means what the settings configure.
        self.enqueuer: Enqueuer | None = None

    # -- start-up ----------------------------------------------------------

    def start(self) -> Worker:
        """Load plugins, read their settings, register message types and schedules, run ``letsgo_startup``; idempotent."""
        if self.started:
            return self
        if self.settings.trace_plugins:
            self._trace_hooks()
        if self._load_entry_points:
            self.plugins, self.problems = load_entry_point_plugins(self.pm, self.settings, self.entry_points_file)
        for index, plugin in enumerate(self._extra_plugins):
            if self.pm.is_registered(plugin):
                continue  # an installed plugin passed explicitly too (tests do): its entry point registered it
            name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
            self.pm.register(plugin, name=name)
            self.plugins.append(PluginInfo(name, getattr(plugin, "distribution", None), None, plugin))
        self.pm.hook.letsgo_add_hookspecs.call_historic(kwargs={"pluginmanager": self.pm})
        self._check_unknown_hooks()
        self._read_plugin_settings()
        for impl in self.implementations("letsgo_register_messages"):
            try:
                impl(register=self.registry.registrar(impl.plugin, impl.distribution))
            except RegistrationError:
                raise
            except Exception as error:
                raise StartupError(
                    f"plugin {impl.plugin!r} failed while registering message types: {type(error).__name__}: {error}"
                ) from error
        self._register_schedules()
        for impl in self.implementations("letsgo_startup"):
            try:
                impl(worker=self)
            except Exception as error:
                raise StartupError(
                    f"plugin {impl.plugin!r} failed in letsgo_startup: {type(error).__name__}: {error}"
                ) from error
        self.started = True
        return self

    def implementations(self, hook_name: str) -> list[Implementation]:
        """Each plugin's implementation of ``hook_name``, in registration order, to call one at a time.

        Each item has ``plugin`` and ``distribution`` and is called with
        keyword arguments, of which it gets the subset it accepts::

            for impl in worker.implementations("letsgo_stripe_handlers"):
                impl(register=table.registrar(impl.plugin, impl.distribution))

        Unlike pluggy's broadcast call, this lets a plugin that adds a hook of
        its own stamp what each plugin registers, and name the plugin in every
        error. A hook nobody implements gives an empty list.
        """
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return []
        dists = {info.name: info.distribution for info in self.plugins}
        return [Implementation(impl.plugin_name, dists.get(impl.plugin_name), impl) for impl in implementations(self.pm, hook_name)]

    def _register_schedules(self) -> None:
        """Collect every plugin's named schedules (``letsgo_register_schedules``); a bad one stops start-up."""
        for impl in self.implementations("letsgo_register_schedules"):
            try:
                impl(register=self.schedules.registrar(impl.plugin, impl.distribution))
            except RegistrationError:
                raise
            except Exception as error:
                raise StartupError(
                    f"plugin {impl.plugin!r} failed while registering schedules: {type(error).__name__}: {error}"
                ) from error

    def _read_plugin_settings(self) -> None:
        """Collect every ``letsgo_register_settings`` declaration and parse the values (a bad one stops start-up)."""
        owners: dict[str, str] = {s.variable: "the host" for s in SETTINGS}
        self.plugin_settings = {}
        for impl in self.implementations("letsgo_register_settings"):
            who = f"plugin {impl.plugin!r}" + (f" (distribution {impl.distribution!r})" if impl.distribution else "")
            declared = self.plugin_settings.setdefault(impl.plugin, [])

            def register(setting: Setting, who: str = who, declared: list[Setting] = declared) -> None:
                if not isinstance(setting, Setting) or setting.field is not None:
                    raise RegistrationError(f"{who} registered {setting!r} as a setting: pass a host.Setting(variable, ...)")
                if not _VARIABLE_NAME.fullmatch(setting.variable):
                    raise RegistrationError(
                        f"{who} declared a setting named {setting.variable!r}: an environment variable name is "
                        "letters, digits and underscores, not starting with a digit"
                    )
                if setting.variable in owners:
                    raise RegistrationError(f"setting {setting.variable} is declared by both {owners[setting.variable]} and {who}")
                owners[setting.variable] = who
                declared.append(setting)

            try:
                impl(register=register)
            except RegistrationError:
                raise
            except Exception as error:
                raise StartupError(
                    f"plugin {impl.plugin!r} failed while declaring its settings: {type(error).__name__}: {error}"
                ) from error
        self.settings = self.settings.with_plugin_settings(s for group in self.plugin_settings.values() for s in group)

    def _check_unknown_hooks(self) -> None:
        """Report implementations of hooks nobody specified (a typo, or a disabled plugin's hook).

        Not fatal by default: an app plugin handling ``letsgo_stripe_handlers``
        must keep working when letsgo-stripe is disabled. Fatal when strict.
        """
        for name, caller in vars(self.pm.hook).items():
            if caller.spec is not None or not hasattr(caller, "get_hookimpls"):
                continue
            for impl in caller.get_hookimpls():
                message = (
                    f"implements unknown hook {name!r}: check the spelling, or install and enable "
                    "the plugin that defines it"
                )
                if self.settings.strict_plugins:
                    raise StartupError(f"plugin {impl.plugin_name!r} {message}")
                logger.warning("plugin %r %s", impl.plugin_name, message)
                self.problems.append(PluginProblem(impl.plugin_name, None, message))

    def stop(self) -> None:
        """Run every ``letsgo_shutdown`` implementation (each even if one fails)."""
        if not self.started:
            return
        for impl in self.implementations("letsgo_shutdown"):
            try:
                impl(worker=self)
            except Exception:
                logger.exception("plugin %r failed in letsgo_shutdown", impl.plugin)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.started = False

    def _trace_hooks(self) -> None:
        trace = logging.getLogger("letsgo.trace")

        def before(hook_name, impls, kwargs):
            trace.info("hook %s -> %s args=%r", hook_name, [i.plugin_name for i in impls], kwargs)

        def after(outcome, hook_name, impls, kwargs):
            trace.info("hook %s returned %r", hook_name, outcome.get_result() if outcome.exception is None else outcome.exception)

        self.pm.add_hookcall_monitoring(before, after)

    # -- services for handlers ----------------------------------------------

    def enqueue(self, message: dict[str, Any], delay_seconds: float = 0, **options: Any) -> str:
        """Enqueue ``message`` through this worker's enqueuer; return its message id.

        The one enqueue path of a process: ``ctx.enqueue`` and plugin routes
        come here. See :func:`host.services.enqueue.enqueue` for the checks and
        the options (``group_id``, ``deduplication_id`` for FIFO queues).
        """
        from host.services.enqueue import enqueue

        return enqueue(message, delay_seconds, enqueuer=self.enqueuer, settings=self.settings, **options)

    @property
    def executor(self) -> HandlerPool:
        """The bounded thread pool that runs sync handlers (``LETSGO_WORKER_THREADS``), made on first use.

        A thread whose handler timed out (``LETSGO_WORKER_HANDLER_TIMEOUT``) is
        replaced, up to twice that many threads: see :class:`host.core.handler_pool.HandlerPool`.

        A batch whose handlers are all ``async def`` and that notifies no sink
        never needs it, so neither the pool nor its module is loaded before.
        """
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    from host.core.handler_pool import HandlerPool

                    size = self.settings.thread_pool_size
                    self._executor = HandlerPool(size, cap=2 * size, visibility_timeout=self.settings.visibility_timeout)
        return self._executor

    def set_aside_handler(self, message_id: str, timeout: float) -> int:
        """A message timed out: replace the pool threads its sync handler still holds; return how many."""
        if self._executor is None:
            return 0  # no sync handler has run: none can be holding a thread
        return self._executor.set_aside(message_id, timeout)

    @property
    def notifies(self) -> bool:
        """True when a notification sent now reaches anyone: a ``letsgo_notify`` sink, or the DEBUG log.

        Check it before building a costly text: with no sink installed (Slack
        unset, say) that text would be built for nobody.
        """
        return anyone_to_tell(self.pm)

    def notify(
        self,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        level: str = "info",
        source: str | None = None,
        required: bool = True,
    ) -> None:
        """Send a notification to every ``letsgo_notify`` sink (Slack, ...); blocks while they post.

        A failed sink raises :class:`host.errors.NotificationError` (the message
        fails and is retried); with ``required=False`` the failure is only logged.
        From async code use :meth:`anotify`. See :mod:`host.core.notify`.
        """
        deliver(self.pm, Notification(text, blocks, level, source), required=required)

    async def anotify(
        self,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        level: str = "info",
        source: str | None = None,
        required: bool = True,
    ) -> None:
        """:meth:`notify` for async code: the sinks post from :attr:`executor`, the event loop goes on."""
        await deliver_async(self.pm, Notification(text, blocks, level, source), self.executor, required=required)

    def plugin_hooks(self, info: PluginInfo) -> list[str]:
        """The hooks a loaded plugin implements, with those of objects it registered as ``<name>.<part>``."""
        hooks = set(hooks_of(self.pm, info.module))
        for name, plugin in self.pm.list_name_plugin():
            if name.startswith(info.name + "."):
                hooks.update(hooks_of(self.pm, plugin))
        return sorted(hooks)


_worker: Worker | None = None
_worker_lock = threading.Lock()
_entry_points_file: str | None = None


def use_entry_point_cache(path: str | None) -> None:
    """Have :func:`get_worker` read the plugins' entry points from ``path`` while it is current.

    ``path`` is written by ``letsgo-worker plugins --freeze`` when an image is
    built; a missing or stale file means a scan, as without it. None: scan.
    """
    global _entry_points_file
    _entry_points_file = path


def get_worker() -> Worker:
    """The process's started worker, built on first use from the environment (and ``.env``)."""
    global _worker
    if _worker is None:
        with _worker_lock:
            if _worker is None:
                load_dotenv_file()
                _worker = Worker(entry_points_file=_entry_points_file).start()
    return _worker


def set_worker(worker: Worker) -> None:
    """Make ``worker`` the process's worker, returned by :func:`get_worker` (the local runtime uses it)."""
    global _worker
    with _worker_lock:
        _worker = worker


def reset_worker() -> None:
    """Forget the process's worker (tests, or after changing the environment)."""
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.stop()
        _worker = None
