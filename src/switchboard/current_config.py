"""The config in force, for what is built once and outlives a reload (the HTTP routers).

`serve`'s SIGHUP swaps the config (`reload.apply`) by putting the new one here; a router holding
this reads it again at each request, so a new agent, binding or account is in its answers at
once. Not a global: each `Runtime` has its own."""

from __future__ import annotations

from switchboard.config import Config


class CurrentConfig:
    """Holds the config in force; call it for that config."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self) -> Config:
        return self.config


__all__ = ["CurrentConfig"]
