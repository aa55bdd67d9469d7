"""Config reload on SIGHUP (`systemctl reload`, `kill -HUP`): the new bindings, agents and
operators take over, and the accounts reconnect with their new settings. A config that does not
validate is refused, and the running one kept. The HTTP and SMTP addresses, the database and
`delivery:` stay as they started (those need a restart)."""

from __future__ import annotations

import logging

from switchboard.accounts import RunningAccounts
from switchboard.agents import build_handlers
from switchboard.config import Config, load_config
from switchboard.errors import ConfigError
from switchboard.redact import Redactor
from switchboard.runtime import Runtime

log = logging.getLogger("switchboard.reload")


async def reload_config(runtime: Runtime, path: str) -> bool:
    """Read `path` again and apply it; False (and every problem logged) when it is refused."""
    try:
        config = load_config(path, strict_env=False, providers=runtime.providers)
    except ConfigError as error:
        for problem in error.problems:
            log.error("config reload refused: %s", problem)
        log.error("config reload refused; the running config is kept")
        return False
    await apply(runtime, config)
    log.info("config reloaded from %s: %d agents, %d accounts, %d bindings", path,
             len(config.agents), len(config.accounts), len(config.bindings))
    return True


async def apply(runtime: Runtime, config: Config) -> None:
    """Swap the running config for `config`: accounts stopped, the parts that read the config
    pointed at the new one, accounts started again."""
    runtime.redact.include(Redactor.from_config(config, runtime.database_url,
                                                providers=runtime.providers))
    await runtime.accounts.stop()
    runtime.config = runtime.current.config = config
    runtime.pipeline.config = config
    runtime.pipeline.handlers = build_handlers(config.agents, runtime.http)
    runtime.services.config = config
    runtime.file_flow.config = config
    runtime.pipeline.admission.accounts = config.accounts
    runtime.controls.agents = config.agents
    runtime.recovery.bindings = {}
    for binding in config.bindings:
        runtime.recovery.bindings.setdefault(binding.name, binding)
    runtime.delivery.disabled = config.disabled
    runtime.hook_delivery.configure()
    if runtime.webhooks is not None:
        runtime.webhooks.config = config
    await runtime.operators.load(config)
    runtime.account_errors.clear()
    runtime.accounts = RunningAccounts(config, runtime.providers, runtime.services,
                                       runtime.adapters)
    await runtime.accounts.start()


__all__ = ["apply", "reload_config"]
