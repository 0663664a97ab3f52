"""The shared string-to-type conversion of parameters."""

from __future__ import annotations

from typing import Literal

import pytest

from core.params import coerce_value


@pytest.mark.parametrize(
    "value, tp, expected",
    [
        ("0.25", float, 0.25),
        (3, float, 3.0),
        (" 7 ", int, 7),
        (4.0, int, 4),
        ("yes", bool, True),
        ("off", bool, False),
        (True, bool, True),
        (" L2 ", Literal["none", "l2"], "l2"),
        (" x ", str, "x"),
    ],
)
def test_converts(value, tp, expected):
    out = coerce_value(value, tp)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    "value, tp, reason",
    [
        ("abc", float, "must be a number"),
        ("nan", float, "finite"),
        (True, float, "must be a number"),
        ("2.5", int, "must be an integer"),
        (2.5, int, "must be an integer"),
        (True, int, "must be an integer"),
        ("maybe", bool, "true or false"),
        ("cosine", Literal["none", "l2"], "one of none, l2"),
        (None, float, "must be of type float"),
    ],
)
def test_rejects_with_a_reason(value, tp, reason):
    with pytest.raises(ValueError, match=reason):
        coerce_value(value, tp)
