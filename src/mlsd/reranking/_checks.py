"""Validation of rule hyperparameters: errors name the rule, the argument and the value."""

from __future__ import annotations

import math

import numpy as np

from mlsd.errors import ConfigError


def check_int(name: str, value: object, lo: int, *, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``value`` is an integer >= ``lo`` (or None if allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        what = f"an integer >= {lo}" + (" or None" if allow_none else "")
        raise ConfigError(f"{name}: expected {what}, got {value!r}")


def check_number(
    name: str, value: object, lo: float, hi: float = math.inf, *, allow_none: bool = False
) -> None:
    """Raise ConfigError unless ``value`` is a real number in ``[lo, hi]`` (or None if allowed)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not lo <= float(value) <= hi
    ):
        rng = f"[{lo:g}, {hi:g}]" if hi < math.inf else f">= {lo:g}"
        what = f"a number {rng}" + (" or None" if allow_none else "")
        raise ConfigError(f"{name}: expected {what}, got {value!r}")
