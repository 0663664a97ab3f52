"""The one parameter system: declared (:func:`param` fields of a :class:`Params` dataclass),
validated once (on construction), and able to build a form (:meth:`Params.describe`).

Selectors (:class:`core.selection.params.SelectorParams`), trainers
(:mod:`core.evaluation.probes`) and the evaluation configuration
(:class:`core.evaluation.config.EvalConfig`) all derive from :class:`Params`; the CLI reads
``NAME=VALUE`` items with :func:`parse_assignments` and every string goes through
:func:`coerce_value`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from .errors import CoresetError


def coerce_value(value: Any, tp: Any) -> Any:
    """Convert ``value`` (a string from the CLI or a form, or a Python value) to type ``tp``.

    ``tp`` is ``bool``, ``int``, ``float``, ``str`` or a ``Literal[...]`` of strings.
    Raises ValueError with a short reason (e.g. "must be an integer"); callers add which
    parameter of what it was.
    """
    origin = typing.get_origin(tp)
    try:
        if origin is Literal:
            choices = typing.get_args(tp)
            text = str(value).strip().lower()
            if text not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return text
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")
        if tp is int:
            if isinstance(value, bool):
                raise ValueError("must be an integer")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("must be an integer")
                return int(value)
            try:
                return int(str(value).strip()) if isinstance(value, str) else int(value)
            except ValueError:
                raise ValueError("must be an integer") from None
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("must be a number")
            try:
                out = float(str(value).strip()) if isinstance(value, str) else float(value)
            except ValueError:
                raise ValueError("must be a number") from None
            if not math.isfinite(out):
                raise ValueError("must be a finite number")
            return out
        if tp is str:
            return str(value).strip()
    except TypeError:
        raise ValueError(f"must be of type {getattr(tp, '__name__', tp)}") from None
    raise TypeError(f"unsupported parameter type {tp!r}")  # pragma: no cover - programming error


# --------------------------------------------------------------------------- declared parameters
def param(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """Declare one parameter: a dataclass field with its help text and an optional numeric
    range (bounds inclusive unless ``exclusive_*``). The type comes from the annotation
    (``bool``, ``int``, ``float``, ``str``, ``str | None`` or ``Literal[...]`` of strings: the
    choices); other annotations (tuples, dicts) are checked by the class's ``validate``."""
    meta = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "exclusive_maximum": exclusive_maximum,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class ParamInfo:
    """What a form (or ``--help``) needs to render one parameter."""

    name: str
    type: str  # "float", "int", "str", "bool", "choice" or another type's name
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False


def _optional_of(tp: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _scalar(tp: Any) -> bool:
    return tp in (bool, int, float, str) or typing.get_origin(tp) is Literal


class Params:
    """Base of every parameter set: selectors, trainers and the evaluation configuration.

    A subclass is a frozen dataclass whose fields are declared with :func:`param`. On
    construction each scalar field is converted by its type (:func:`coerce_value`, so strings
    from the CLI or a form work), its range is checked, then :meth:`validate` runs the checks
    that span fields. Errors are ``error`` (a :class:`~core.errors.CoresetError` subclass)
    and name the parameter and :meth:`subject` (what it belongs to), e.g. ``Parameter 'a' of
    method 'ram_apl' must be <= 1, got 2.0.``. :meth:`describe` gives the form spec,
    :meth:`from_mapping` builds from ``{name: value}`` and refuses unknown names.
    """

    error: ClassVar[type[Exception]] = CoresetError

    @classmethod
    def subject(cls) -> str:
        """What the parameters belong to, as errors name it (override)."""
        return cls.__name__

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = self._convert(f.name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            self._check_range(f, value)
        self.validate()

    def _convert(self, name: str, value: Any, tp: Any) -> Any:
        inner = _optional_of(tp)
        if inner is not None:
            if value is None:
                return None
            tp = inner
        if not _scalar(tp):
            return value
        try:
            return coerce_value(value, tp)
        except ValueError as exc:
            raise self.error(f"Parameter {name!r} of {self.subject()}: got {value!r}, {exc}.") from exc

    def _check_range(self, f: dataclasses.Field, value: Any) -> None:
        lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
        if value is None or (lo is None and hi is None):
            return
        if lo is not None and (value < lo or (f.metadata.get("exclusive_minimum") and value == lo)):
            op = ">" if f.metadata.get("exclusive_minimum") else ">="
            self.fail(f.name, f"must be {op} {lo}, got {value}")
        if hi is not None and (value > hi or (f.metadata.get("exclusive_maximum") and value == hi)):
            op = "<" if f.metadata.get("exclusive_maximum") else "<="
            self.fail(f.name, f"must be {op} {hi}, got {value}")

    def fail(self, name: str, what: str) -> typing.NoReturn:
        """Raise :attr:`error`: ``Parameter '<name>' of <subject> <what>.``"""
        raise self.error(f"Parameter {name!r} of {self.subject()} {what}.")

    def validate(self) -> None:
        """Checks that span fields or types :func:`coerce_value` does not cover (override);
        ranges are checked from the declarations."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def unknown_message(cls, name: str, allowed: list[str]) -> str:
        """The error for a parameter name the class does not have."""
        return f"Unknown parameter {name!r} for {cls.subject()}; allowed: {', '.join(allowed) or '(none)'}."

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None = None) -> Any:
        """Build from a mapping of names to values or strings; an unknown name raises :attr:`error`."""
        values = dict(values or {})
        allowed = cls.names()
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise cls.error(cls.unknown_message(unknown[0], allowed))
        return cls(**values)

    @classmethod
    def describe(cls) -> list[ParamInfo]:
        """One :class:`ParamInfo` per field, in declaration order (for forms and ``--help``)."""
        hints = typing.get_type_hints(cls)
        infos = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            tp = _optional_of(hints[f.name]) or hints[f.name]
            if typing.get_origin(tp) is Literal:
                kind, choices = "choice", tuple(typing.get_args(tp))
            else:
                kind, choices = getattr(tp, "__name__", str(tp)), None
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            m = f.metadata
            infos.append(
                ParamInfo(
                    f.name,
                    kind,
                    default,
                    m.get("help", ""),
                    choices,
                    m.get("minimum"),
                    m.get("maximum"),
                    bool(m.get("exclusive_minimum")),
                    bool(m.get("exclusive_maximum")),
                )
            )
        return infos

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- NAME=VALUE
def split_assignment(item: str) -> tuple[str, str] | None:
    """``"name=value"`` -> ``("name", "value")`` (both stripped); None when there is no ``=`` or no name."""
    name, sep, value = str(item).partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    return name, value.strip()


def parse_assignments(
    items: Iterable[str] | None,
    what: str,
    *,
    form: str = "NAME=VALUE",
    hint: str = "",
    error: type[Exception] = CoresetError,
    require_value: bool = False,
    scope: str | None = None,
) -> dict[str, Any]:
    """The one ``NAME=VALUE`` parser of the command line: ``["a=0.2", "k=1"]`` -> ``{"a": "0.2", "k": "1"}``
    (values stay strings; the parameter classes convert them).

    A malformed item raises ``error`` with ``"{what} {item!r} must look like {form}{hint}."``;
    ``require_value``: an empty value is malformed too. ``scope=":"``: names are
    ``SCOPE:NAME`` and the result is ``{scope: {name: value}}`` (``run --param ram_apl:a=0.2``).
    """
    out: dict[str, Any] = {}
    for item in items or []:
        parsed = split_assignment(item)
        if parsed is not None and scope is not None:
            outer, sep, inner = parsed[0].partition(scope)
            parsed = None if not sep or not outer.strip() or not inner.strip() else parsed
        if parsed is None or (require_value and not parsed[1]):
            raise error(f"{what} {item!r} must look like {form}{hint}.")
        name, value = parsed
        if scope is not None:
            outer, _, inner = name.partition(scope)
            out.setdefault(outer.strip(), {})[inner.strip()] = value
        else:
            out[name] = value
    return out
