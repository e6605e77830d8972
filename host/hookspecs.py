"""Every hook a letsgo-worker plugin may implement.

This module is the reference for plugin authors. Implement a hook by writing a
function of the same name, decorated with :data:`host.hookimpl`, in a module that
your distribution declares as an entry point in the ``letsgo_worker`` group::

    [project.entry-points.letsgo_worker]
    my_plugin = "my_plugin"

An implementation may accept any subset of a hook's parameters, by name; hooks
are always called with keyword arguments, so new parameters can be added to a
specification without breaking existing plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from host import Context, MessageContext, Notification, RegisterSetting, Worker
    from host.core.dispatch import Outcome
    from host.core.registry import Register
    from host.core.schedules import RegisterSchedule
    from host.local.routes import RegisterRoute

hookspec = pluggy.HookspecMarker("letsgo_worker")


# -------------------------------------------------------------------------
# Start-up: hooks called once per process while the worker is being built
# -------------------------------------------------------------------------


@hookspec(historic=True)
def letsgo_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications of your own, so other plugins can implement them.

    Called once, right after a plugin is registered, before any other hook.
    The Stripe plugin uses it to add ``letsgo_stripe_handlers``.

    :param pluginmanager: The worker's :class:`pluggy.PluginManager`; call
        ``pluginmanager.add_hookspecs(module_or_class)``.

    The return value is ignored. Any plugin may implement this hook.
    """


@hookspec
def letsgo_register_settings(register: RegisterSetting) -> None:
    """Declare the configuration variables this plugin reads.

    Called once per process, while the worker starts, for each plugin
    separately, before any other hook below; so a bad value stops start-up
    before anything runs, and every variable is recorded with its plugin.

    :param register: Call ``register(setting)`` once per variable, with a
        :class:`host.Setting` (its ``variable``, ``default`` as text,
        ``parse``, ``description`` and whether it is a ``secret``). The
        worker reads every declared variable from the environment (and
        ``.env``) that its :class:`host.Settings` came from, and parses it with
        ``setting.parse``; a bad value is a start-up error naming the
        variable (and, unless the setting is a secret, the value). Read the
        value from :func:`letsgo_startup` on, with
        ``worker.settings.get(setting)``. A secret's value never appears in a
        repr, a log line, an error or the ``letsgo-worker plugins`` listing.

    Declaring a variable that another plugin declared, or one of the host's
    own, is a start-up error naming both. The return value is ignored.
    """


@hookspec
def letsgo_register_messages(register: Register) -> None:
    """Register the message types this plugin handles.

    Called once per process, while the worker starts, for each plugin
    separately, so that every type is recorded with the plugin that
    registered it.

    :param register: Call ``register(type, handler, payload=Model, description=...)``
        once per message type. ``type`` is a non-empty string; types starting
        with ``letsgo:`` are reserved for this project's own plugins.
        ``handler`` is a ``def`` or ``async def`` called as
        ``handler(message, ctx)`` with a :class:`host.Message` and a
        :class:`host.MessageContext`; returning means success, raising means
        failure (the message is retried). ``payload`` is an optional pydantic
        model the payload is validated against before the handler runs; a
        payload that fails validation is rejected and dead-lettered.
        ``description`` is shown by ``letsgo-worker types``.

    Registering a type that another plugin already registered is a start-up
    error naming both plugins. The return value is ignored.
    """


@hookspec
def letsgo_register_routes(register: RegisterRoute, worker: Worker) -> None:
    """Add HTTP routes to the local server (``letsgo-worker serve``).

    Called once when the local server starts; not called in AWS Lambda.

    :param register: Call ``register(method, path, handler)``. ``handler`` is
        called as ``handler(request)`` with a :class:`host.Request` and
        returns a :class:`host.Response`. The same method and path
        registered twice is a start-up error naming both plugins. A route
        refuses what a web page could send (an ``Origin`` header: 403; a
        ``Content-Type`` other than ``application/json``: 415), as ``POST /``
        does; pass ``from_web_pages=True`` for a route that verifies its
        caller itself (the Stripe webhook checks a signature).
    :param worker: The :class:`host.Worker` serving the routes (a plugin reads
        its own settings, webhook secrets for example, with ``worker.settings.get``).

    The return value is ignored. The Stripe plugin uses it for
    ``POST /stripe/webhook``.
    """


@hookspec
def letsgo_startup(worker: Worker) -> None:
    """Prepare resources the plugin needs for the life of the process.

    Called once, after every plugin is loaded and every message type is
    registered, before the first message or tick is handled (in Lambda: at the
    first invocation of a new execution environment).

    :param worker: The :class:`host.Worker`: its ``settings``,
        ``registry`` and ``notify()``.

    The return value is ignored. An exception stops start-up, naming the plugin.
    """


@hookspec
def letsgo_shutdown(worker: Worker) -> None:
    """Release what :func:`letsgo_startup` acquired.

    Called once when the local server (or ``serve --sqs``) stops gracefully.
    Lambda gives no reliable shutdown signal, so do not rely on it there.

    :param worker: The :class:`host.Worker`.

    The return value is ignored. Every implementation runs even if one raises.
    """


# -------------------------------------------------------------------------
# Work: hooks called for messages, scheduled ticks and notifications
# -------------------------------------------------------------------------


@hookspec
def letsgo_message_done(outcome: Outcome, ctx: MessageContext) -> None:
    """Observe what became of a message: for metrics, tracing and audit.

    Called once per delivery of every message, whatever became of it: it
    succeeded, failed (it will be retried, or dead-lettered after its last
    receive) or was rejected (it goes to the dead-letter queue). Called as soon
    as the outcome is known, in Lambda and in the local runtime alike, before the
    message is settled. The host's own ``GET /metrics`` counts through it.

    :param outcome: A :class:`host.Outcome`: ``status`` (a
        string enum, ``succeeded``, ``failed`` or ``rejected``: test it with
        ``outcome.status == "failed"``), ``message_id``, ``type`` and ``plugin``
        (None when unknown), ``reason`` (why it failed or was rejected),
        ``error`` (the handler's exception, if it raised) and ``duration_ms``. ``outcome.metric_type`` is the type to label a metric
        with (``"(unknown)"`` for a type no plugin registered, so a client cannot
        grow a metric's series) and ``outcome.handler_seconds`` how long the
        handler ran (None when none ran).
    :param ctx: A :class:`host.MessageContext` with what is known of the
        message, a rejected one included: ``message_id``, ``receive_count``,
        ``attributes``, ``logger``, ``worker`` and, in Lambda, the Lambda
        context. ``type`` is None when the body had no readable type (bad
        JSON, no type); ``plugin`` is None also for a type no plugin registered.

    Implement it as a plain ``def``: it runs on the event loop of the message's
    batch, so keep it quick (hand slow work, a network call, to a thread or a
    queue of your own). An exception it raises is logged, naming the plugin,
    and changes nothing: not the outcome, and not the other implementations,
    which are all called. When no plugin implements it, it costs nothing.
    The return value is ignored.
    """


@hookspec
def letsgo_scheduled(event: dict[str, Any], ctx: Context) -> None:
    """Do the work of one scheduled tick.

    Called on every tick of the schedule: by EventBridge Scheduler in AWS
    (``LETSGO_WORKER_SCHEDULE``, ``rate(1 hour)`` by default) and by the local
    scheduler of ``letsgo-worker serve``. Every implementation runs even when
    another one fails; if any failed, the invocation fails after all ran, so
    AWS's retry policy applies.

    :param event: The scheduled event as delivered (``detail-type`` is
        ``"Scheduled Event"``; ``time`` is the tick's instant).
    :param ctx: A :class:`host.Context` with a logger, ``notify()`` and, in
        Lambda, the Lambda context and remaining time.

    The return value is ignored; ``async def`` implementations are awaited.
    """


@hookspec
def letsgo_notify(notification: Notification) -> None:
    """Deliver a notification to a person (Slack, e-mail, Discord...).

    Called for every ``notify()`` from handlers, scheduled hooks and the host
    itself (for example when a message is rejected). Every implementation is
    called; one that raises fails the notification (and so the message that
    sent it, unless the caller opted out).

    :param notification: A :class:`host.Notification` with ``text``,
        optional ``blocks``, ``level`` and ``source``.

    The return value is ignored. The ``letsgo-slack`` plugin implements it.
    """


# -------------------------------------------------------------------------
# Named schedules: each plugin's own timing
# -------------------------------------------------------------------------


@hookspec
def letsgo_register_schedules(register: RegisterSchedule) -> None:
    """Register the named schedules of this plugin, each with a handler of its own.

    Called once per process, while the worker starts (after
    :func:`letsgo_register_messages`), for each plugin separately, so that
    every schedule is recorded with the plugin that registered it.

    :param register: Call ``register(name, expression, handler, timezone="UTC", description=...)``
        once per schedule. ``name`` is 1 to 64 letters, digits, ``-``, ``_``
        or ``.``, unique across plugins. ``expression`` is ``rate(...)``,
        ``cron(...)`` or ``at(...)``, read exactly as ``LETSGO_WORKER_SCHEDULE``
        is (EventBridge Scheduler's semantics); ``cron()`` and ``at()`` read
        their wall-clock times in ``timezone``, an IANA zone. ``handler`` is a
        ``def`` or ``async def`` called as ``handler(event, ctx)``, like
        :func:`letsgo_scheduled`, on this schedule's ticks only; raising fails
        the tick (in AWS the invocation fails, so the retry policy applies).
        ``description`` is shown by ``letsgo-worker schedules``.

    The local scheduler of ``letsgo-worker serve`` fires each schedule on its
    own timing; in AWS each is one EventBridge Scheduler schedule
    (``letsgo-worker schedules --cloudformation``) whose input carries the
    name. A name registered twice is a start-up error naming both plugins; an
    invalid name, expression or zone is a start-up error naming the plugin and
    the schedule. The return value is ignored.
    """
