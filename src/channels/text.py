"""Text that every store can keep: no lone surrogates, no NUL characters."""

from __future__ import annotations

import re

# A surrogate code point in a str can never be written as UTF-8 (SQLite and PostgreSQL refuse
# the whole row), and PostgreSQL refuses NUL in text. Both arrive in provider input: Slack's
# JSON "\ud800", an email in charset utf-7 ("+2AA-"), a raw 8-bit header byte.
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


def clean_text(s: str) -> str:
    """`s` with lone surrogates and NUL replaced by U+FFFD; a split surrogate pair is joined."""
    if not _UNSTORABLE.search(s):
        return s
    joined = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return joined.replace("\x00", "\ufffd")
