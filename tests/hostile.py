"""Hostile values for property tests: JSON of every type, the strings that break things (lone
surrogates, NUL, over-long ids, words that look like the real thing), and a way to put one at
any field of a real payload."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=8,
)
ODD = st.sampled_from(["\ud800", "a\udfffb", "\x00", "x" * 300, "", "0", "-5", "1.5", "true",
                       "message", "app_mention", "private", "bot_command", "@switchboard_bot"])
VALUES = JSON | ODD | st.lists(ODD, max_size=2) | st.dictionaries(ODD, JSON, max_size=2)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path in a document: each one a field some payload has."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of `document` with the value at `path` replaced (or added)."""
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy
