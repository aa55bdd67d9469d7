"""Secrets out of everything Switchboard says: log lines, stored errors, API answers.

Every configured secret (each account's `secret_keys`: bot tokens, signing and webhook secrets,
app tokens, relay passwords; API keys, operator and metrics tokens; the database password) and
anything shaped like a provider's secret (its `secret_patterns`: a token some API puts in every
request URL, so every library error quoting a URL quotes it) is replaced by `[redacted]`.
One `Redactor`, built from the loaded config, is used by the logging filter on every handler,
by the account errors the runtime keeps, by the store for the errors it writes, and by the
API's answers (`safe_answers.SafeAnswers`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import UserDict
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from channels.adapter import Provider, SecretPattern
from switchboard.config import Config
from switchboard.providers import PROVIDERS

MASK = "[redacted]"
# Shorter values are not secrets worth the name, and masking them would garble every line that
# happens to contain them.
MIN_SECRET = 6
_FORMATTER = logging.Formatter()


class _Pattern:
    """A `SecretPattern` compiled for text and for bytes. Its literal is looked for first, so
    the regex engine runs only where a match can be (a lookbehind costs 25 times more)."""

    def __init__(self, secret: SecretPattern) -> None:
        self.literal, self.literal_bytes = secret.literal, secret.literal.encode()
        self.text = re.compile(secret.pattern)
        self.bytes = re.compile(secret.pattern.encode())
        self.replacement = secret.replacement.replace("{mask}", MASK)
        self.replacement_bytes = self.replacement.encode()


def _patterns(providers: Mapping[str, Provider]) -> list[_Pattern]:
    return [_Pattern(p) for provider in providers.values() for p in provider.secret_patterns]


_REGISTERED = _patterns(PROVIDERS)


class Redactor:
    """Replaces known secrets, and text shaped like a provider's secret, with `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = (),
                 providers: Mapping[str, Provider] | None = None) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                # as it is, inside a JSON string, and percent-encoded in a URL
                forms |= {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
        self._secrets = sorted(forms, key=len, reverse=True)  # a longer one may hold a shorter
        self._secret_bytes = [s.encode() for s in self._secrets]
        self._patterns = _REGISTERED if providers is None else _patterns(providers)

    def include(self, other: Redactor) -> None:
        """Redact `other`'s secrets too (a reloaded config's), keeping these."""
        self._secrets = sorted(set(self._secrets) | set(other._secrets), key=len, reverse=True)
        self._secret_bytes = [s.encode() for s in self._secrets]

    @classmethod
    def from_config(cls, config: Config, database_url: str | None = None,
                    providers: Mapping[str, Provider] | None = None) -> Redactor:
        """Every secret of `config`, and the password in the database URL."""
        found = config.secrets()
        if database_url:
            try:
                password = make_url(database_url).password
            except ArgumentError:  # not a URL SQLAlchemy reads; the engine will say so
                password = None
            if password:
                found.add(str(password))
        return cls(found, providers)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in self._patterns:
            if pattern.literal in text:
                text = pattern.text.sub(pattern.replacement, text)
        return text

    def data(self, body: bytes) -> bytes:
        """The same on bytes (an HTTP body), without decoding it."""
        for secret in self._secret_bytes:
            if secret in body:
                body = body.replace(secret, MASK.encode())
        for pattern in self._patterns:
            if pattern.literal_bytes in body:
                body = pattern.bytes.sub(pattern.replacement_bytes, body)
        return body


class AccountErrors(UserDict[str, str]):
    """Why an account is not working, by account name; redacted as each one is stored, since
    the reasons are library error texts (which quote URLs, and so tokens)."""

    def __init__(self, redact: Redactor) -> None:
        self.redact = redact
        super().__init__()

    def __setitem__(self, account: str, reason: str) -> None:
        super().__setitem__(account, self.redact(reason))


class RedactingFilter(logging.Filter):
    """Scrubs a record's message, traceback and stack before any handler formats it."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both
            message = f"{record.msg} {record.args!r}"
            record.msg, record.args = message, ()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
            record.__dict__.pop("color_message", None)  # uvicorn's coloured copy of the format
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_logging(redact: Redactor) -> Callable[[], None]:
    """Put a `RedactingFilter` on every handler there is now (the root's, uvicorn's, Python's
    last resort), and quiet httpx and httpcore, which log each request's URL at INFO. Returns
    what takes the filter off again."""
    for name in ("httpx", "httpcore"):
        quiet = logging.getLogger(name)
        if quiet.level == logging.NOTSET:  # `serve --log-level debug` sets them itself
            quiet.setLevel(logging.WARNING)
    handlers: set[logging.Handler] = set(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    scrub = RedactingFilter(redact)
    for handler in handlers:
        handler.addFilter(scrub)

    def uninstall() -> None:
        for handler in handlers:
            handler.removeFilter(scrub)

    return uninstall
