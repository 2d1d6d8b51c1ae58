"""Checks of user input, written once: integers in a range, numbers in an interval, close-match hints.

Every check raises a ValueError whose message names the field, the rule and the value found,
so a bad setting anywhere in rlmem (an env argument, a hyperparameter, a suite entry, a flag)
reads the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (numpy integers count; a bool does not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as an int, or raise a ValueError naming the field and the allowed range."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise a ValueError unless it is an integer >= 1."""
    return check_int(name, value, 1)


def check_in_range(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value``, or raise a ValueError unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return value


def close_matches(value: Any, options: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The options closest to ``value`` (difflib's ratio), best first."""
    return difflib.get_close_matches(str(value), list(options), n=n, cutoff=cutoff)


def did_you_mean(value: Any, options: Iterable[str], n: int = 3, listing: str | None = None) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the options closest to ``value``.

    Where none is close: ``listing`` with the options filled in (e.g. ``" (valid: {options})"``),
    or nothing.
    """
    options = list(options)
    close = close_matches(value, options, n)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if listing is not None:
        return listing.format(options=", ".join(options))
    return ""


def check_choice(name: str, value: Any, options: Iterable[str]) -> str:
    """Return ``value``, or raise a ValueError naming the choices (and the closest one)."""
    options = list(options)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}"
                         f"{did_you_mean(value, options, 1)}")
    return value


__all__ = ["check_choice", "check_in_range", "check_int", "check_positive_int", "close_matches", "did_you_mean",
           "is_int"]
