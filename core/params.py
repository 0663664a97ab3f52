"""Typed parameters from strings: the one conversion the CLI, the app's forms and the
parameter dataclasses of selectors and trainers share."""

from __future__ import annotations

import math
import typing
from typing import Any, Literal


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
