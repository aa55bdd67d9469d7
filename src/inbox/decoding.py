"""Bytes of a message into text that can be stored: charsets, 8-bit headers, utf-7 surrogates."""

from __future__ import annotations

import base64
import re
from email.header import decode_header
from email.message import Message
from email.policy import EmailPolicy
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from channels.text import clean_text

# WHATWG: a message labelled ISO-8859-1 is, in practice, windows-1252 (smart quotes, euro sign).
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252"}
_ESCAPED = re.compile("[\udc80-\udcff]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")
_RFC2231 = re.compile(r"\*=([\w.-]+)'[\w-]*'([^\s;\"]*)")


class SafePolicy(EmailPolicy):
    """`policy.default`, except that a header whose encoded words decode to lone surrogates
    (charset utf-7: "+2AA-") is read again with those words re-encoded as clean UTF-8: the
    stdlib raises UnicodeEncodeError on them, which would cost the whole message."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except UnicodeEncodeError:
            return super().header_fetch_parse(name, _reencoded(value))


POLICY = SafePolicy()


def _reencoded(value: str) -> str:
    def word(match: re.Match[str]) -> str:
        data, charset = decode_header(match.group(0))[0]
        text = _decode(data, charset) if isinstance(data, bytes) else data
        return "=?utf-8?b?" + base64.b64encode(clean_text(text).encode()).decode() + "?="

    def parameter(match: re.Match[str]) -> str:
        text = _decode(unquote_to_bytes(match.group(2)), match.group(1))
        return "*=utf-8''" + quote(clean_text(text), safe="")

    return _RFC2231.sub(parameter, _ENCODED_WORD.sub(word, value))


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "ascii", "replace")
    except LookupError:  # an unknown charset
        return data.decode("utf-8", "replace")


def header_text(value: str) -> str:
    """A header value as storable text. Raw 8-bit bytes reach us as surrogate escapes (the
    stdlib reads headers as ASCII): read them as UTF-8 (SMTPUTF8 mail), else windows-1252."""
    if _ESCAPED.search(value):
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # other surrogates too: clean_text replaces them all
            return clean_text(value)
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            value = data.decode("cp1252", "replace")
    return clean_text(value)


def decode_text_part(part: Message) -> str:
    """Decode a text part with its declared charset, falling back to UTF-8, then Latin-1."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    declared = part.get_content_charset()
    candidates = [_CHARSET_ALIASES.get(declared, declared)] if declared else []
    for charset in [*candidates, "utf-8"]:
        try:
            return clean_text(payload.decode(charset))
        except (LookupError, UnicodeDecodeError):
            continue
    return clean_text(payload.decode("latin-1"))  # decodes any byte string
