"""Provider JSON at the adapter edge: decoded strictly, made storable, read through typed models.

Everything a provider sends passes here before any of it becomes a turn. Refused (400):
bytes that are not UTF-8; NaN and Infinity (not JSON: stored, they read back as invalid JSON);
nesting deeper than any provider sends (json, FastAPI's encoder and our own walks recurse); and
fields of the wrong type, checked by a pydantic model per payload holding only the fields the
adapter reads. Cleaned: lone surrogates, which no database stores (`clean_text`), and NUL,
which PostgreSQL's text columns refuse.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from channels.errors import RejectedRequest
from channels.messages import InboundMessage
from channels.text import clean_text

MAX_DEPTH = 64  # Slack's Block Kit and Telegram's replies nest about a dozen levels

M = TypeVar("M", bound=BaseModel)


class ProviderModel(BaseModel):
    """The fields an adapter reads from a provider payload, typed as the provider documents
    them (JSON types, no coercion: "1" is not 1). Unknown fields are ignored: providers add
    new ones all the time."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999 is JSON, but Python reads it as inf
        raise ValueError(f"{literal[:40]} is too large a number")
    return value


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
# After a strict UTF-8 decode, a lone surrogate or a NUL can only arrive as a \u escape.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


def load_json(body: bytes, what: str = "request body") -> dict[str, Any]:
    """The JSON object in `body`, storable as it is; RejectedRequest (400) when it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed(f"the {what} is not UTF-8 (byte {error.start} is not valid)") from None
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise _malformed(f"the {what} is nested too deeply") from None
    except ValueError as error:
        raise _malformed(f"the {what} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise _malformed(f"the {what} is not a JSON object")
    # Only a body with enough brackets can be too deep, and only one with such an escape
    # needs cleaning: the walk costs tens of microseconds, the checks a fraction of one.
    if _UNSTORABLE_ESCAPE.search(text) or text.count("{") + text.count("[") > MAX_DEPTH:
        data = storable(data, what)
    return data


def storable_text(value: str) -> str:
    """`value` as every database stores it: lone surrogates (`clean_text`) and NUL, which
    PostgreSQL's text refuses, replaced by U+FFFD. The same object when nothing needed it."""
    return clean_text(value).replace("\x00", "\ufffd")


def storable(value: Any, what: str = "payload", depth: int = 0) -> Any:
    """`value` (parsed JSON) with its strings and keys made `storable_text`; RejectedRequest
    past MAX_DEPTH levels or at a NaN or infinite number."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise _malformed(f"the {what} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, list):
            return [storable(item, what, depth + 1) for item in value]
        return {storable_text(str(key)): storable(item, what, depth + 1)
                for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise _malformed(f"the {what} holds {value}, which is not a JSON value")
    return value


_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
_MESSAGE_TEXTS = ("event_id", "conversation", "sender", "sender_name", "text", "message_id",
                  "thread")


def storable_message(message: InboundMessage) -> InboundMessage:
    """`message` with its text fields `storable_text`, so that neither its turn nor a reply
    quoting it meets a database that refuses it. The same object when nothing needed it."""
    m = message  # one search over all of them: this runs for every turn
    if not _UNSTORABLE.search(f"{m.text}{m.sender_name}{m.sender}{m.conversation}{m.event_id}"
                              f"{m.message_id}{m.thread}"):
        return message
    return replace(message, **{name: storable_text(value) for name in _MESSAGE_TEXTS
                               if isinstance(value := getattr(message, name), str)})


def parse(model: type[M], data: Any, where: str = "") -> M:
    """`data` read as `model`; RejectedRequest (400) naming each field that does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _malformed(_describe(error, where)) from None


def _malformed(message: str) -> RejectedRequest:
    return RejectedRequest("malformed", message)


_SHOULD_BE = {
    "string_type": "should be a string", "int_type": "should be an integer",
    "bool_type": "should be true or false", "model_type": "should be an object",
    "model_attributes_type": "should be an object", "dict_type": "should be an object",
    "list_type": "should be an array", "missing": "is missing",
    "string_too_long": "is longer than {max_length} characters",
    "greater_than_equal": "is out of range", "less_than": "is out of range",
}


def _describe(error: ValidationError, where: str) -> str:
    """The first few problems in a person's words: `event.user should be a string, not an
    array`. The offending values are not quoted back."""
    problems = []
    for item in error.errors(include_url=False)[:3]:
        path = where
        for part in item["loc"]:
            if isinstance(part, str) and part.startswith("<"):
                continue  # a union's tag (which model read it), not a field
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        kind = item["type"]
        template = _SHOULD_BE.get(kind)
        said = template.format(**item.get("ctx", {})) if template else f"is wrong: {item['msg']}"
        if kind.endswith("_type"):
            said += f", not {_json_type(item['input'])}"
        problems.append(f"{path or 'the payload'} {said}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"
