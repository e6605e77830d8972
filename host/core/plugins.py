"""Plugin discovery: entry points of the ``letsgo_worker`` group, each loaded on its own.

Its records are named tuples: a dataclass writes and compiles its methods when
it is defined, which every Lambda cold start would pay for.
"""

from __future__ import annotations

import importlib
import logging
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

from host import hookspecs
from host.config import Settings
from host.errors import PluginLoadError

if TYPE_CHECKING:
    from importlib.metadata import Distribution

ENTRY_POINT_GROUP = "letsgo_worker"
PROJECT_NAME = "letsgo_worker"
HOST_DISTRIBUTION = "letsgo-worker"

logger = logging.getLogger("letsgo.plugins")


class PluginInfo(NamedTuple):
    """A loaded plugin: its name (the entry point's), distribution and version."""

    name: str
    distribution: str | None
    version: str | None
    module: Any
    builtin: bool = False


class PluginProblem(NamedTuple):
    """Something wrong found while loading plugins, reported instead of stopping the worker."""

    plugin: str
    distribution: str | None
    message: str


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the host's hook specifications and nothing registered."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginEntryPoint(NamedTuple):
    """One ``letsgo_worker`` entry point: its name, the object it names, and the distribution it comes from."""

    name: str
    value: str  # "module" or "module:attribute", as in entry_points.txt
    distribution: str | None
    version: str | None

    def load(self) -> Any:
        """Import the object :attr:`value` names, as ``importlib.metadata.EntryPoint.load`` does."""
        reference = self.value.split("[", 1)[0]  # extras, if any, do not change what is imported
        module_name, _, attribute = reference.partition(":")
        found: Any = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            found = getattr(found, part)
        return found


def scan_entry_points() -> list[PluginEntryPoint]:
    """Every installed ``letsgo_worker`` entry point, read from the distributions' metadata."""
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        distribution, version = distribution_name_and_version(ep.dist) if ep.dist is not None else (None, None)
        found.append(PluginEntryPoint(ep.name, ep.value, distribution, version))
    return found


def distribution_name_and_version(dist: Distribution) -> tuple[str, str]:
    """The ``Name`` and ``Version`` of an installed distribution."""
    return name_and_version(dist.read_text("METADATA") or dist.read_text("PKG-INFO")) or (
        dist.metadata["Name"], dist.version
    )


# A plain one-line ``Name`` or ``Version`` header, the first lines of every metadata file.
_SIMPLE_HEADER = re.compile(r"(name|version):[ \t]*([\x21-\x7e][\x20-\x7e]*)", re.IGNORECASE)


def name_and_version(text: str | None) -> tuple[str, str] | None:
    """``Name`` and ``Version`` read from metadata ``text`` without the email parser (a cold start pays for it).

    None when they are not both plain one-line headers before anything
    unusual: the caller then asks ``importlib.metadata``, whose answer this
    matches in every other case.
    """
    found: dict[str, str] = {}
    lines = (text or "").split("\n")
    for index, line in enumerate(lines):
        if not line or line[0] in " \t\r" or ":" not in line:
            return None  # the end of the headers, or a folded or broken one: too unusual here
        match = _SIMPLE_HEADER.fullmatch(line)
        if match is not None:
            if index + 1 < len(lines) and lines[index + 1][:1] in (" ", "\t"):
                return None  # the value goes on, folded, on the next line
            found.setdefault(match.group(1).lower(), match.group(2))
            if len(found) == 2:
                return found["name"], found["version"]
    return None


def _selected(name: str, builtin: bool, settings: Settings) -> bool:
    if name in settings.disable_plugins:
        return False
    # Built-ins are part of the host: LETSGO_WORKER_PLUGINS selects among the others.
    return builtin or settings.plugins is None or name in settings.plugins


def load_entry_point_plugins(
    pm: pluggy.PluginManager, settings: Settings, cache_file: str | None = None
) -> tuple[list[PluginInfo], list[PluginProblem]]:
    """Import and register every selected plugin; return what loaded and what went wrong.

    Each entry point is imported on its own, so one broken plugin is reported by
    name (entry point, distribution, error) and skipped while the rest work. With
    ``LETSGO_WORKER_STRICT_PLUGINS=1`` a failed import raises
    :class:`PluginLoadError` instead. With ``cache_file`` (written by
    ``letsgo-worker plugins --freeze``) the entry points come from that file
    while it matches what is installed, and from a scan otherwise.
    """
    found = None
    if cache_file is not None:
        from host.core import entry_point_cache

        found = entry_point_cache.read(cache_file)
    if found is None:
        found = scan_entry_points()
    loaded: list[PluginInfo] = []
    problems: list[PluginProblem] = []
    seen: dict[str, str | None] = {}
    for ep in found:
        distribution, version = ep.distribution, ep.version
        if ep.name in seen:
            if seen[ep.name] != distribution:
                problems.append(
                    PluginProblem(ep.name, distribution, f"plugin name {ep.name!r} is also used by distribution {seen[ep.name]!r}; skipped")
                )
            continue
        seen[ep.name] = distribution
        builtin = distribution == HOST_DISTRIBUTION
        if not _selected(ep.name, builtin, settings):
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)  # a hook with a wrong signature fails here, like an import
        except Exception as error:
            failure = PluginLoadError(ep.name, distribution, error)
            if settings.strict_plugins:
                raise failure from error
            logger.error("%s; the plugin is skipped", failure, exc_info=error)
            problems.append(PluginProblem(ep.name, distribution, str(failure)))
            continue
        loaded.append(PluginInfo(ep.name, distribution, version, module, builtin))
    for name in sorted((settings.plugins or frozenset()) - set(seen)):
        problems.append(PluginProblem(name, None, f"LETSGO_WORKER_PLUGINS names {name!r}, but no installed plugin has that name"))
    for name in sorted(settings.disable_plugins - set(seen)):
        # A typo here would leave running the very plugin someone meant to block: say so, as above.
        problems.append(PluginProblem(
            name, None, f"LETSGO_WORKER_DISABLE_PLUGINS names {name!r}, but no installed plugin has that name",
        ))
    return loaded, problems


def report_problems(problems: list[PluginProblem]) -> None:
    """Print each plugin problem on stderr, naming the plugin (the CLI's and the server's report)."""
    import sys

    for problem in problems:
        print(f"letsgo-worker: plugin {problem.plugin!r}: {problem.message}", file=sys.stderr)


def hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of the hooks ``plugin`` implements, sorted."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def implementations(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    """The implementations of ``hook_name`` in registration order.

    Calling implementations one by one (with :func:`call_impl`) lets every error
    name its plugin, which pluggy's broadcast call cannot do.
    """
    return list(getattr(pm.hook, hook_name).get_hookimpls())


def call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one hook implementation with the subset of ``kwargs`` it accepts."""
    return impl.function(**{name: kwargs[name] for name in impl.argnames})


class Implementation(NamedTuple):
    """One plugin's implementation of one hook, to be called on its own.

    Calling it with keyword arguments passes the subset the implementation
    accepts, as pluggy does. See :meth:`host.Worker.implementations`.
    """

    plugin: str
    distribution: str | None
    hookimpl: pluggy.HookImpl

    def __call__(self, **kwargs: Any) -> Any:
        return call_impl(self.hookimpl, **kwargs)
