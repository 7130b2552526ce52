"""Name -> factory registries for methods, metrics and datasets.

In the spirit of timm's ``register_model``/``list_models``: built-ins register with a decorator,
third-party packages through entry points (groups ``magbench.methods``, ``magbench.metrics``,
``magbench.datasets``), and a local class can be named as ``package.module:Attr``.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

from magbench.errors import MagbenchError, UnknownNameError

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    name: str
    obj: T | None  # None until an entry point is loaded
    entry_point: Any = None
    builtin: bool = True


class Registry(Generic[T]):
    """A registry of named objects (usually classes or factories).

    ``kind`` names what is registered ("method", "metric", "dataset") for error messages;
    ``group`` is the entry-point group searched for plugins; ``builtins`` is a module imported
    lazily on first use so that importing magbench stays cheap.
    """

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self._builtin_modules = builtins
        self._entries: dict[str, _Entry[T]] = {}
        self._loaded_builtins = False
        self._loaded_plugins = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None) or getattr(obj, "__name__")
            if key in self._entries and self._entries[key].obj is not obj:
                raise MagbenchError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = _Entry(key, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

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
                entry.obj = entry.entry_point.load()
            except Exception as exc:  # a broken plugin must not hide behind a KeyError
                raise MagbenchError(
                    f"{self.kind} {name!r}: entry point {entry.entry_point.value!r} "
                    f"failed to load: {exc}"
                ) from exc
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
        return obj  # type: ignore[return-value]

    def items(self, pattern: str | None = None) -> Iterator[tuple[str, T]]:
        for n in self.names(pattern):
            yield n, self.get(n)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries


METHODS: Registry[Any] = Registry(
    "method", "magbench.methods", builtins=("magbench.baselines",)
)
METRICS: Registry[Any] = Registry("metric", "magbench.metrics", builtins=("magbench.metrics",))
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
