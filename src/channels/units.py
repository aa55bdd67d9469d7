"""Durations and sizes as bindings.yaml writes them (`30s`, `4h`, `10MiB`), for any settings model:
the application's and every provider's."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZES = {"B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9,
          "GiB": 2**30, None: 1}


def parse_duration(value: Any) -> timedelta | None:
    """`30s`, `30m`, `4h`, `30d`, `1w` or a number of seconds; None stays None."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use 30s, 10m, 4h or 30d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a duration; use 30s, 10m, 4h or 30d")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def parse_size(value: Any) -> Any:
    """`65536`, `64KiB`, `10MiB`, `1GiB` (or KB, MB, GB: powers of 1000) as a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; use a number of bytes, 512KiB or 10MiB")
    if isinstance(value, int | float) or value is None:
        return value
    found = _SIZE.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a size; use a number of bytes, 512KiB or 10MiB")
    return int(float(found.group(1)) * _SIZES[found.group(2)])


Duration = Annotated[timedelta | None, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Timeout = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]

__all__ = ["Duration", "Size", "Timeout", "parse_duration", "parse_size"]
