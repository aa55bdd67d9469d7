"""Text as every database can store it."""

from __future__ import annotations

import re

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """`value` with each lone UTF-16 surrogate (JSON's "\\ud800", a broken utf-7 mail body)
    replaced by U+FFFD: UTF-8 cannot encode one, so neither SQLite nor PostgreSQL takes it."""
    return _LONE_SURROGATE.sub("\ufffd", value)
