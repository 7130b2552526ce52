"""Typed option declarations: a method's options as one frozen dataclass, validated when built.

A method declares its options once::

    from magbench.options import MethodOptions, option

    @dataclass(frozen=True)
    class HoldOptions(MethodOptions):
        block: int = option(12, ge=1, help="frames per yielded block")
        mirror: Literal["auto", "switch"] = "auto"
        checkpoint_path: Optional[str] = option(None, path=True)

    class Hold(Method):
        Options = HoldOptions

:meth:`MethodOptions.build` takes what a user gave (``--opt KEY=VALUE`` arrives as JSON where it
parses, else text) and returns the typed instance, or raises :class:`OptionError`, one line naming
the option, the value given and what is allowed, before any work. Each field's annotation is its
type: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` (a choice), ``Optional[X]``,
``tuple[int, int]`` (also given as ``480x832``); ``option(..., ge=, gt=, le=, lt=)`` adds a range
and ``path=True`` a path that must exist. The instance is what ``Method.config()`` records.

A plugin that still declares a plain ``defaults`` dict gets a declaration typed from the default
values (:func:`options_from_defaults`), so its options are checked the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from magbench.errors import MagbenchError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class OptionError(MagbenchError, TypeError):
    """A method option's value is not allowed; the message names the option and what is.
    (A TypeError too, as a bad keyword argument of the method's constructor is.)"""


def option(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, path: bool = False, help: str = "") -> Any:
    """A field with a range (``ge``/``gt``/``le``/``lt``), a must-exist ``path`` and a help text."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "path": path, "help": help}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class MethodOptions:
    """Base of every method's option declaration (a frozen dataclass of typed fields)."""

    owner: ClassVar[str] = "method"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option with its default value (JSON values)."""
        out = {}
        for f in fields(cls):
            out[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        return {k: _jsonable(v) for k, v in out.items()}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, given: dict[str, Any], owner: str | None = None) -> "MethodOptions":
        """Validate ``given`` (unknown keys refused) over the defaults; a typed instance."""
        who = owner or cls.owner
        known = cls.names()
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise OptionError(
                f"{who}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}"
            )
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name not in given:
                continue
            values[f.name] = coerce(who, f.name, given[f.name], hints[f.name], f.metadata)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The resolved options, JSON values, sorted: what the run's identity records."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in sorted(fields(self), key=lambda f: f.name)}

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        d = type(self).defaults()
        return {k: v for k, v in self.to_dict().items() if d.get(k, object()) != v}


def describe_type(tp: Any, meta: Any = None) -> str:
    """What a field accepts, in words, for error messages and `magbench methods --options`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = describe_type(rest[0], meta) if len(rest) == 1 else "a value"
        return f"{inner} or none"
    if tp is bool:
        return "true or false"
    bounds = _bounds_text(meta)
    if tp is int:
        return "an integer" + bounds
    if tp is float:
        return "a number" + bounds
    if tp is str:
        return "an existing path" if meta and meta.get("path") else "text"
    if origin is tuple:
        if len(args) == 2 and args[0] is int and args[1] is int:
            return "two integers (HxW, e.g. 480x832)"
        return "a list"
    return "a value"


def _bounds_text(meta: Any) -> str:
    if not meta:
        return ""
    parts = []
    for key, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if meta.get(key) is not None:
            parts.append(f"{word} {meta[key]:g}")
    return (" " + " and ".join(parts)) if parts else ""


def coerce(owner: str, name: str, value: Any, tp: Any, meta: Any = None) -> Any:
    """``value`` as type ``tp``, or an OptionError naming the option, the value and what is allowed."""

    given = value  # the message quotes what the user gave, not a half-converted value

    def bad() -> OptionError:
        return OptionError(f"{owner}: option {name}={given!r} is not allowed; expected {describe_type(tp, meta)}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in {"none", "null"})):
            return None
        rest = [a for a in args if a is not type(None)]
        for a in rest:
            try:
                return coerce(owner, name, value, a, meta)
            except OptionError:
                continue
        raise bad()
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, (int, float, bool)) and str(value).lower() == str(choice).lower()):
                return choice
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise bad() from None
        if not isinstance(value, int):
            raise bad()
        _check_range(value, meta, bad)
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise bad() from None
        if not isinstance(value, (int, float)) or value != value:
            raise bad()
        value = float(value)
        _check_range(value, meta, bad)
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise bad()
        if meta and meta.get("path"):
            p = Path(value).expanduser()
            if not p.exists():
                raise OptionError(f"{owner}: option {name}={value!r}: no such file or folder; give an existing path")
        return value
    if origin is tuple:
        if isinstance(value, str) and "x" in value.lower():
            value = value.lower().split("x")
        if not isinstance(value, (list, tuple)):
            raise bad()
        if args and args[-1] is not Ellipsis and len(value) != len(args):
            raise bad()
        inner = args[0] if args and args[-1] is Ellipsis else None
        return tuple(coerce(owner, name, v, inner or args[i], meta) for i, v in enumerate(value))
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def _check_range(value: float, meta: Any, bad) -> None:
    if not meta:
        return
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise bad()
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise bad()
    if meta.get("le") is not None and not value <= meta["le"]:
        raise bad()
    if meta.get("lt") is not None and not value < meta["lt"]:
        raise bad()


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def options_from_defaults(name: str, defaults: dict[str, Any]) -> type[MethodOptions]:
    """A declaration typed from a plain ``defaults`` dict (plugins written before declarations):
    each option takes the type of its default (None: any value)."""
    spec = []
    for key, default in defaults.items():
        if default is None:
            tp: Any = Any
        elif isinstance(default, bool):
            tp = bool
        elif isinstance(default, int):
            tp = int
        elif isinstance(default, float):
            tp = float
        elif isinstance(default, str):
            tp = str
        elif isinstance(default, (list, tuple)):
            tp = Any
        else:
            tp = Any
        if isinstance(default, (list, dict, set)):
            spec.append((key, tp, dataclasses.field(default_factory=lambda d=default: d)))
        else:
            spec.append((key, tp, dataclasses.field(default=default)))
    cls = dataclasses.make_dataclass(f"{name.title().replace('-', '')}Options", spec, bases=(MethodOptions,), frozen=True)
    return cls
