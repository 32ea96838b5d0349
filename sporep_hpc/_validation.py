"""Shared parameter checks with one message shape: name, valid range, value."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

from .errors import ParameterError

_BRACKETS = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def check_interval(
    name: str,
    value: object,
    low: float | None,
    high: float | None,
    *,
    closed: str = "both",
    integer: bool = False,
    unit: str = "",
) -> None:
    """Raise ParameterError unless `value` is a finite number in the interval.

    Example message: ``width must be in (0, inf) eV; got -0.1``.
    """
    kind = Integral if integer else Real
    left, right = _BRACKETS[closed]
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    span = f"{'an integer' if integer else 'a number'} in {left}{lo}, {hi}{right}{' ' + unit if unit else ''}"
    bad = isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
    if not bad and low is not None:
        bad = value < low if closed in ("both", "left") else value <= low
    if not bad and high is not None:
        bad = value > high if closed in ("both", "right") else value >= high
    if bad:
        raise ParameterError(f"{name} must be {span}; got {value!r}")


def check_choice(name: str, value: object, choices: Collection[str]) -> None:
    """Raise ParameterError unless `value` is one of `choices`."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in sorted(choices))
        raise ParameterError(f"{name} must be one of {valid}; got {value!r}")
