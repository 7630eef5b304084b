"""Type and range checks of config values, derived from the config dataclasses' field annotations.

Every section of a run config (``data``, ``model``, ``method``, ``train``) is a dataclass. :func:`check_section`
checks each value of a section against its field's annotation (``int``, ``float``, ``bool``, ``str``,
``list[int]``, ``X | None``, unions such as ``bool | str``) and against the range rule of the field's name
(:data:`RANGES`), and returns the values converted: an integer where a float is expected becomes a float
(``learning_rate: 1`` is 1.0), a string that reads as a number (YAML 1.1 reads ``1e-4`` as a string) becomes a float.
It runs before the dataclass is built and before any data is touched, so a bad value fails in seconds with a
:class:`ConfigError` naming the key, what it expects and what it received.

A field's name carries its range in every section (the project's one vocabulary: ``epochs`` and ``k`` mean the
same thing wherever they occur); a new config dataclass is covered by its annotations without registering it.
Choices among strings (``optimizer``, ``gradient``, ...) are checked by the dataclasses themselves.

Example:

>>> import dataclasses
>>> @dataclasses.dataclass
... class Train:
...     epochs: int = 10
...     learning_rate: float = 1e-4
...     max_train: int | None = None
>>> check_section("train", Train, {"epochs": 3, "learning_rate": 1, "max_train": None})
{'epochs': 3, 'learning_rate': 1.0, 'max_train': None}
>>> check_section("train", Train, {"epochs": "ten"})
Traceback (most recent call last):
...
identity_tf.validation.ConfigError: `train.epochs` must be an integer >= 1. Received: epochs='ten' (str)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A config file, a config value or an override is malformed."""


@dataclasses.dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where the bound is open); None = unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Range(0, low_open=True)
AT_LEAST_1 = Range(1)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1, low_open=True, high_open=True)

# Range rules by field name (fnmatch patterns; the first match applies; a list's rule applies to its items).
RANGES: dict[str, Range] = {
    "epochs": AT_LEAST_1,
    "batch_size": AT_LEAST_1,
    "learning_rate": POSITIVE,
    "momentum": Range(0, 1, high_open=True),
    "lr_milestones": AT_LEAST_1,
    "lr_factor": POSITIVE,
    "collapse_patience": NON_NEGATIVE,
    "seed": NON_NEGATIVE,
    "*_seed": NON_NEGATIVE,
    "k": AT_LEAST_1,
    "size": AT_LEAST_1,
    "num_*": AT_LEAST_1,
    "max_*": AT_LEAST_1,
    "val_size": AT_LEAST_1,
    "val_fraction": FRACTION,
    "label_corruption": NON_NEGATIVE,
    "alpha": NON_NEGATIVE,
    "gradient_noise": NON_NEGATIVE,
    "noise_epochs": NON_NEGATIVE,
    "lam": POSITIVE,
    "tau": POSITIVE,
    "temperature": POSITIVE,
    "s": AT_LEAST_1,
    "hidden": AT_LEAST_1,
    "predictor_hidden": AT_LEAST_1,
    "vocab_size": AT_LEAST_1,
    "max_len": AT_LEAST_1,
    "dropout": Range(0, 1, high_open=True),
    "grid": AT_LEAST_1,
    "features": AT_LEAST_1,
    "train_size": AT_LEAST_1,
    "test_size": AT_LEAST_1,
}


def range_of(name: str) -> Range | None:
    """The range rule of a field name (None: no rule)."""
    for pattern, rule in RANGES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return rule
    return None


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers")}
_NAMES[str] = ("a string", "strings")


def _describe(hint, rule: Range | None = None, plural: bool = False) -> str:
    """What ``hint`` accepts, in words; ``rule`` is attached to the numeric types."""
    if hint is Any:
        return "any value"
    if hint in _NAMES:
        words = _NAMES[hint][plural]
        return f"{words} {rule.describe()}" if rule is not None and hint in (int, float) else words
    origin = typing.get_origin(hint)
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0], rule, plural=True)}" if args else "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a, rule, plural) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


class _Mismatch(Exception):
    pass


def _convert(value, hint):
    """``value`` converted to ``hint`` (raises _Mismatch)."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(hint)
        return [_convert(item, args[0]) for item in value] if args else list(value)
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # an annotation this checker does not know: left to the dataclass


def _numbers(value) -> list:
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_value(section: str, name: str, value, hint) -> Any:
    """One value against its annotation and its name's range rule; returns it converted."""
    rule = range_of(name)
    expected = _describe(hint, rule)
    try:
        converted = _convert(value, hint)
    except _Mismatch:
        converted = _Mismatch
    if converted is _Mismatch or (rule is not None and not all(rule.contains(v) for v in _numbers(converted))):
        raise ConfigError(f"`{section}.{name}` must be {expected}. Received: {name}={value!r} ({type(value).__name__})")
    return converted


def check_section(section: str, cls: type, values: dict) -> dict:
    """Checks the values of a config section against the fields of dataclass ``cls``; returns them converted.

    Unknown keys are left to the caller (the trainer lists the valid ones).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    return {
        key: (check_value(section, key, value, hints[key]) if key in fields else value) for key, value in values.items()
    }
