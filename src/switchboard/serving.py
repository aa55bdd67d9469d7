"""How `switchboard serve` runs: one log style for uvicorn's lines and ours (text or JSON, one
event per line), and what it says once it is serving: where the console is, each account's
state, and (with no operator at all) a new admin token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, Literal

import uvicorn
from pythonjsonlogger.core import RESERVED_ATTRS

from switchboard.reload import reload_config
from switchboard.runtime import Runtime

log = logging.getLogger("switchboard")
LogFormat = Literal["text", "json"]
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_config(level: str, form: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn (which applies it) and everything else: one
    handler on the root, uvicorn's loggers propagating to it, so every line has one format.
    JSON lines carry a record's extra fields too (`turn_id`, `account`)."""
    formatter: dict[str, Any] = {"format": TEXT}
    if form == "json":
        formatter = {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS,
                     "rename_fields": {"asctime": "time", "levelname": "level",
                                       "name": "logger"},
                     # uvicorn's copy of its message with terminal colours: not a field
                     "reserved_attrs": [*RESERVED_ATTRS, "color_message"]}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"switchboard": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "switchboard",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True, "level": level}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


class Serving(uvicorn.Server):
    """uvicorn's server, which says what is running once it listens (not before: a start
    that fails on a port in use must not print a token nobody can use)."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, console_url: str,
                 config_path: str) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.console_url = console_url
        self.config_path = config_path
        self._reloading = asyncio.Lock()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.started or self.should_exit:
            return
        log.info("serving: the console is at %s", self.console_url)
        smtp = self.runtime.services.listen.get("smtp")
        for line, level in account_states(self.runtime, smtp):
            log.log(level, "%s", line)
        with contextlib.suppress(NotImplementedError):  # (no signals on Windows)
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: self.runtime.tasks.spawn(self.reload()))
        token = await self.runtime.operators.first_admin()
        if token is not None:
            print("\n  No operator is configured, so an admin token was created. It is shown "
                  "only this once\n  (only its hash is kept); `switchboard operators add` "
                  f"makes another:\n\n    {token}\n", flush=True)


    async def reload(self) -> None:
        """SIGHUP: the config read again (one reload at a time), each account's state said."""
        async with self._reloading:
            log.info("SIGHUP: reading %s again", self.config_path)
            if await reload_config(self.runtime, self.config_path):
                for line, level in account_states(self.runtime,
                                                  self.runtime.services.listen.get("smtp")):
                    log.log(level, "%s", line)


def account_states(runtime: Runtime, smtp: tuple[str, int] | None
                   ) -> list[tuple[str, int]]:
    """One line per account: running, disabled and why, or did not start and why."""
    config, errors = runtime.config, runtime.account_errors
    lines = []
    for name, settings in config.accounts.items():
        if name in config.disabled:
            lines.append((f"account {name} is disabled: {config.disabled[name]}",
                          logging.WARNING))
        elif name in errors:
            lines.append((f"account {name} is not running: {errors[name]}", logging.WARNING))
        else:
            where = f", SMTP on {smtp[0]}:{smtp[1]}" if settings.provider == "email" and smtp \
                else ""
            lines.append((f"account {name} is running ({settings.provider}{where})",
                          logging.INFO))
    return lines


__all__ = ["Serving", "account_states", "log_config"]
