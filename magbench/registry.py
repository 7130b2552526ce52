"""Name -> factory registries for methods, metrics and datasets.

In the spirit of timm's ``register_model``/``list_models``: built-ins register with a decorator,
third-party packages through entry points (groups ``magbench.methods``, ``magbench.metrics``,
``magbench.datasets``), and a local class can be named as ``package.module:Attr``.

Registries are typed, as lm-eval's are: the method registry holds subclasses of
:class:`~magbench.method.Method`, the metric registry subclasses of
:class:`~magbench.metrics.base.Metric`, checked when a class is registered and when an entry
point or ``package.module:Attr`` is looked up. A class gets its ``name`` from the registry: the
registered name, or the ``package.module:Attr`` it was looked up by.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from magbench.errors import MagbenchError, UnknownNameError

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    name: str
    obj: T | None  # None until an entry point is loaded
    entry_point: Any = None
    builtin: bool = True


class Registry(Generic[T]):
    """A registry of named classes (or, without ``base``, factories).

    ``kind`` names what is registered ("method", "metric", "dataset") for error messages;
    ``group`` is the entry-point group searched for plugins; ``builtins`` are modules imported
    lazily on first use so that importing magbench stays cheap; ``base`` ("module:Class",
    resolved lazily to keep imports cheap and acyclic) is the class every entry must subclass;
    without it, entries must be callables.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = (), base: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtins
        self._base_spec = base
        self._entries: dict[str, _Entry[T]] = {}
        self._loaded_builtins = False
        self._loaded_plugins = False

    @property
    def base(self) -> type | None:
        if self._base_spec is None:
            return None
        module, _, attr = self._base_spec.partition(":")
        return getattr(importlib.import_module(module), attr)

    def _check(self, obj: Any, where: str) -> None:
        base = self.base
        if base is None:
            if not callable(obj):
                raise MagbenchError(f"{self.kind} {where}: {obj!r} is not callable")
            return
        if not (isinstance(obj, type) and issubclass(obj, base)):
            what = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
            raise MagbenchError(
                f"{self.kind} {where} is {what}, not a subclass of {base.__module__}.{base.__name__}: "
                f"a {self.kind} is a class deriving from {base.__name__}"
            )

    def _name(self, obj: Any, name: str) -> None:
        # The registry names the class; a subclass of a registered class gets its own name.
        if isinstance(obj, type) and self.base is not None and not vars(obj).get("name"):
            obj.name = name  # type: ignore[attr-defined]

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            own = vars(obj).get("name") if isinstance(obj, type) else None
            key = name or own or getattr(obj, "__name__")
            if key in self._entries and self._entries[key].obj is not obj:
                raise MagbenchError(f"{self.kind} {key!r} is registered twice")
            self._check(obj, repr(key))
            self._name(obj, key)
            self._entries[key] = _Entry(key, obj)
            return obj

        return deco

    # -- discovery ----------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if not self._loaded_builtins:
            self._loaded_builtins = True
            for mod in self._builtin_modules:
                importlib.import_module(mod)
        if not self._loaded_plugins:
            self._loaded_plugins = True
            for ep in entry_points(group=self.group):
                if ep.name not in self._entries:
                    self._entries[ep.name] = _Entry(ep.name, None, entry_point=ep, builtin=False)
                elif self._entries[ep.name].builtin:
                    # Never a silent swap: the built-in keeps the name, the plugin is named as ignored.
                    logging.getLogger("magbench").warning(
                        "%s plugin %r (entry point %s) has a built-in's name and is ignored: rename it",
                        self.kind, ep.name, ep.value,
                    )

    def names(self, pattern: str | None = None) -> list[str]:
        self._ensure_loaded()
        names = sorted(self._entries)
        if pattern:
            pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
            names = [n for n in names if fnmatch.fnmatch(n, pat)]
        return names

    def is_builtin(self, name: str) -> bool:
        self._ensure_loaded()
        return self._entries[name].builtin

    def get(self, name: str) -> T:
        """Return the object registered as ``name``, or load ``package.module:Attr``."""
        if ":" in name:
            return self._import_path(name)
        self._ensure_loaded()
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} "
                f"List them with `magbench {self.kind}s`."
            )
        if entry.obj is None:
            try:
                obj = entry.entry_point.load()
            except Exception as exc:  # a broken plugin must not hide behind a KeyError
                raise MagbenchError(
                    f"{self.kind} {name!r}: entry point {entry.entry_point.value!r} "
                    f"failed to load: {exc}"
                ) from exc
            self._check(obj, f"{name!r} (entry point {entry.entry_point.value})")
            self._name(obj, name)
            entry.obj = obj
        return entry.obj  # type: ignore[return-value]

    def _import_path(self, spec: str) -> T:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownNameError(f"{self.kind} {spec!r}: cannot import {module_name!r}: {exc}") from exc
        obj = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise UnknownNameError(
                    f"{self.kind} {spec!r}: module {module_name!r} has no attribute {attr!r}"
                ) from exc
        self._check(obj, repr(spec))
        self._name(obj, spec)
        return obj  # type: ignore[return-value]

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries


METHODS: Registry[Any] = Registry(
    "method", "magbench.methods", builtins=("magbench.baselines",), base="magbench.method:Method"
)
METRICS: Registry[Any] = Registry(
    "metric", "magbench.metrics", builtins=("magbench.metrics",), base="magbench.metrics.base:Metric"
)
DATASETS: Registry[Any] = Registry("dataset", "magbench.datasets", builtins=("magbench.data",))

register_method = METHODS.register
register_metric = METRICS.register
register_dataset = DATASETS.register


def list_methods(pattern: str | None = None) -> list[str]:
    return METHODS.names(pattern)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    return DATASETS.names(pattern)
