"""The configured accounts, running: each enabled one opened through its provider and
started, the providers' shared listeners after them; all stopped again at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from channels.adapter import AccountAdapter, Listener, Provider, Services
from channels.errors import StartFailed
from switchboard.config import Config

log = logging.getLogger(__name__)


class RunningAccounts:
    """Opens and starts every enabled account; one that cannot start is reported on
    `/api/accounts` (through `services.note_error`) and the others run all the same.

    `adapters` (by account name) is shared with the pipeline, which delivers through it."""

    def __init__(self, config: Config, providers: Mapping[str, Provider], services: Services,
                 adapters: dict[str, Any]) -> None:
        self.config = config
        self.providers = providers
        self.services = services
        self.adapters = adapters
        self.started: dict[str, AccountAdapter] = {}
        self.listeners: list[Listener] = []

    async def start(self) -> None:
        running: dict[str, dict[str, AccountAdapter]] = {}
        for name, settings in self.config.accounts.items():
            if name in self.config.disabled:  # said once serving (serving.account_states)
                continue
            provider = self.providers[settings.provider]
            adapter = await self._start(provider, name, settings)
            if adapter is not None:
                self.started[name] = self.adapters[name] = adapter
                running.setdefault(provider.name, {})[name] = adapter
        for provider_name, adapters in running.items():
            provider = self.providers[provider_name]
            if provider.listen is None:
                continue
            section = self.config.sections.get(provider.section.key) if provider.section \
                else None
            listener = provider.listen(adapters, section, self.services)
            await listener.start()
            self.listeners.append(listener)

    async def _start(self, provider: Provider, name: str, settings: Any
                     ) -> AccountAdapter | None:
        try:
            adapter = provider.open(name, settings, self.services)
            await adapter.start()
        except StartFailed as error:  # a bad token, an unreachable API: this account only
            self.services.note_error(name, str(error))
            log.error("%s account %s did not start: %s", provider.name, name, error)
            return None
        except Exception as error:  # an adapter's bug must not keep the others from running
            self.services.note_error(name, f"the account did not start: {error}")
            log.exception("%s account %s did not start", provider.name, name)
            return None
        return adapter

    async def stop_listeners(self) -> None:
        """Stop the shared inbound first (no new mail while the pipeline drains)."""
        for listener in reversed(self.listeners):
            await listener.stop()
        self.listeners.clear()

    async def stop(self) -> None:
        """Stop every account that started; one failing to stop does not keep the rest."""
        await self.stop_listeners()
        for name, adapter in reversed(list(self.started.items())):
            try:
                await adapter.stop()
            except Exception:
                log.exception("account %s did not stop cleanly", name)
            self.adapters.pop(name, None)
        self.started.clear()


__all__ = ["RunningAccounts"]
