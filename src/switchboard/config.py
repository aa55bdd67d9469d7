"""`bindings.yaml` into typed, validated, immutable objects, with every problem at file:line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from channels.adapter import AccountSettings, Provider
from channels.guards import DmPolicy, RateLimit
from channels.rules import Binding
from channels.units import Duration, Size, Timeout, parse_duration, parse_size
from switchboard.errors import ConfigError, Problem
from switchboard.hooks import WebhookConfig
from switchboard.providers import PROVIDERS

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys of the application's own settings whose values are secrets (each provider's settings
# name theirs in `secret_keys`): redacted from every log line, error and answer (redact.py).
APP_SECRET_KEYS = frozenset({"api_key", "token", "metrics_token"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionPolicy(_Strict):
    idle_timeout: Duration = timedelta(minutes=30)
    max_duration: Duration = timedelta(hours=4)
    max_concurrent_per_user: int | None = Field(default=None, ge=1)
    keep_alive: Duration = timedelta(minutes=10)
    auto_archive_after: Duration = timedelta(days=30)


class AgentConfig(_Strict):
    handler: Literal["echo", "http", "openai"] = "echo"
    model: str | None = None
    url: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    system_prompt: str | None = None
    timeout: Duration = timedelta(seconds=30)
    allow_model_override: bool = True
    sessions: dict[str, Any] | None = None


class BindingConfig(_Strict):
    name: str | None = None
    agent: str
    account: str
    dm: bool = True
    mentions: bool = True
    channels: tuple[str, ...] = ()
    allow_senders: tuple[str, ...] = ()
    allow_conversations: tuple[str, ...] = ()
    model: str | None = None
    follow_threads: bool = False
    session_scope: Literal["conversation", "thread", "sender"] = "conversation"
    transfer_to: tuple[str, ...] = ()  # agents the person may move their session to
    dm_policy: DmPolicy | None = None
    rate_limit: RateLimit | None = None
    coalesce: bool = False


class OperatorConfig(_Strict):
    name: str
    role: Literal["viewer", "operator", "admin"] = "viewer"
    token: str = ""
    agents: list[str] | None = None  # limited to these agents' turns, sessions, inboxes


class DeliveryConfig(_Strict):
    max_attempts: int = Field(default=6, ge=1)
    backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    agent_concurrency: int = Field(default=16, ge=1)
    workers: int = Field(default=16, ge=1)  # turns worked on at once, per process
    # turns a process holds in memory; beyond, they wait in the database (docs/delivery.md)
    queue_limit: int = Field(default=5000, ge=2)
    lease: Duration = timedelta(seconds=30)  # how long one delivery attempt may hold its row
    worker_timeout: Duration = timedelta(seconds=15)  # silence after which a process is dead


class FilesConfig(_Strict):
    """`files:`: where file bytes are kept and how long download links and files live
    (limits are per account, `accounts.NAME.files`). docs/files.md."""

    dir: str | None = None  # default: `files` beside the SQLite database, else ./files
    url_ttl: Timeout = timedelta(hours=1)
    url_secret: str = ""  # signs download links; default: generated once, kept in the database
    retention: Duration = None  # e.g. 90d: older files are removed by the sweep
    fetch_attempts: int = Field(default=4, ge=1)
    fetch_backoff: Timeout = timedelta(seconds=1)
    fetch_timeout: Timeout = timedelta(seconds=60)  # one download (provider or agent URL)
    sweep_interval: Timeout = timedelta(hours=1)


class _DocumentBase(_Strict):
    """The application's sections; `accounts` and the providers' own sections are added from
    the registry by `_document_model`."""

    agents: dict[str, AgentConfig] = {}
    bindings: list[BindingConfig] = []
    sessions: SessionPolicy = SessionPolicy()
    operators: list[OperatorConfig] = []
    delivery: DeliveryConfig = DeliveryConfig()
    metrics_token: str = ""  # when set, /metrics needs `Authorization: Bearer <it>`
    metrics_operators: bool = False  # /metrics also (or only) takes any operator's token
    database: str = ""  # a database URL; SWITCHBOARD_DATABASE_URL overrides it (db.locate)
    files: FilesConfig = FilesConfig()
    public_url: str = ""  # where people and agents reach this server (download links)
    webhooks: list[WebhookConfig] = []  # signed outbound events: docs/outbound-webhooks.md

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an absolute http(s) URL; write it as "
                             "https://switchboard.example.com")
        return value.rstrip("/")


_MODELS: dict[tuple[int, ...], type[_DocumentBase]] = {}


def _document_model(providers: Mapping[str, Provider]) -> type[_DocumentBase]:
    """The whole document's model for these providers: `accounts` is the union of their
    settings models, discriminated on `provider`; each provider's section is a key of its own."""
    key = tuple(id(p) for p in providers.values())
    if key in _MODELS:
        return _MODELS[key]
    models = tuple(p.settings for p in providers.values())
    account: Any = models[0] if len(models) == 1 else \
        Annotated[Union[models], Field(discriminator="provider")]  # noqa: UP007
    sections: dict[str, Any] = {
        p.section.key: (p.section.model, p.section.model())
        for p in providers.values() if p.section is not None}
    model = create_model("_Document", __base__=_DocumentBase,
                         accounts=(dict[str, account], {}), **sections)
    _MODELS[key] = model
    return model


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. `disabled` maps account names to why they are off."""

    path: str
    agents: Mapping[str, AgentConfig]
    accounts: Mapping[str, AccountSettings]
    bindings: tuple[Binding, ...]
    sessions: SessionPolicy
    operators: tuple[OperatorConfig, ...]
    delivery: DeliveryConfig
    disabled: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sections: Mapping[str, BaseModel] = field(default_factory=lambda: MappingProxyType({}))
    metrics_token: str = ""
    metrics_operators: bool = False
    database: str = ""
    files: FilesConfig = field(default_factory=FilesConfig)
    public_url: str = ""
    webhooks: tuple[WebhookConfig, ...] = ()

    def secrets(self) -> set[str]:
        """Every secret value in the config: each account's `secret_keys`, and the
        application's own (`APP_SECRET_KEYS`)."""
        found: set[str] = {self.metrics_token, self.files.url_secret,
                           *(hook.secret for hook in self.webhooks)}
        for account in self.accounts.values():
            found |= account.secrets()
        for model in (*self.agents.values(), *self.operators):
            found.update(str(v) for k, v in model.model_dump().items()
                         if k in APP_SECRET_KEYS and v)
        return {value for value in found if value}

    def policy_for(self, agent: str) -> SessionPolicy:
        override = self.agents[agent].sessions if agent in self.agents else None
        if not override:
            return self.sessions
        return SessionPolicy(**{**self.sessions.model_dump(), **override})


# --- loading -------------------------------------------------------------------------------


@dataclass
class _Reader:
    """Turns YAML nodes into plain values, remembering each path's line and missing variables."""

    file: str
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict)
    missing: list[tuple[tuple[Any, ...], str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def value(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                if key in out:
                    self.problems.append(Problem(
                        self.file, key_node.start_mark.line + 1, _dotted((*path, key)),
                        "duplicate key; each name may appear once",
                    ))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.value(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        scalar = yaml.constructor.SafeConstructor().construct_object(node)
        if isinstance(scalar, str) and "${" in scalar:
            return self.interpolate(scalar, path)
        return scalar

    def interpolate(self, text: str, path: tuple[Any, ...]) -> str:
        def replace(found: re.Match[str]) -> str:
            name, default = found.group(1), found.group(2)
            value = os.environ.get(name)
            if default is not None and not value:  # as in the shell: unset or empty
                return default
            if value is not None:
                return value
            self.missing.append((path, name))
            return ""

        return _VAR.sub(replace, text)

    def line(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _pydantic_problems(reader: _Reader, error: ValidationError,
                       providers: Mapping[str, Provider]) -> list[Problem]:
    problems = []
    names = ", ".join(providers)
    for item in error.errors():
        loc = tuple(item["loc"])
        if loc[:1] == ("accounts",) and len(loc) > 2 and loc[2] in providers:
            loc = loc[:2] + loc[3:]  # drop the discriminator pydantic inserts
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo?); it would be silently ignored otherwise"
        elif item["type"] == "union_tag_invalid":
            loc = (*loc, "provider")
            message = (f"unknown provider {item.get('input', {}).get('provider')!r}; "
                       f"use one of {names}")
        elif item["type"] == "union_tag_not_found":
            loc = (*loc, "provider")
            message = f"provider is required: one of {names}"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(Problem(reader.file, reader.line(loc), _dotted(loc), message))
    return problems


def _dicts(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _reference_problems(reader: _Reader, raw: dict[str, Any]) -> list[Problem]:
    """Names that point nowhere and names used twice; works on the raw document, so these
    are reported alongside type errors."""
    problems: list[Problem] = []

    def add(path: tuple[Any, ...], message: str) -> None:
        problems.append(Problem(reader.file, reader.line(path), _dotted(path), message))

    agents, accounts = _dicts(raw.get("agents")), _dicts(raw.get("accounts"))
    bindings = raw.get("bindings") if isinstance(raw.get("bindings"), list) else []
    names: dict[str, int] = {}
    for i, b in enumerate(bindings):
        b = _dicts(b)
        here = ("bindings", i)
        if "agent" in b and b["agent"] not in agents:
            add((*here, "agent"), f"unknown agent {b['agent']!r}; agents are: "
                f"{', '.join(agents) or 'none'}")
        if "account" in b and b["account"] not in accounts:
            add((*here, "account"), f"unknown account {b['account']!r}; accounts are: "
                f"{', '.join(accounts) or 'none'}")
        targets = b.get("transfer_to")
        for j, target in enumerate(targets if isinstance(targets, list) else []):
            if target not in agents:
                add((*here, "transfer_to", j), f"unknown agent {target!r}; agents are: "
                    f"{', '.join(agents) or 'none'}")
        if b.get("name"):
            if b["name"] in names:
                add((*here, "name"), f"duplicate binding name {b['name']!r} "
                    f"(first at line {names[b['name']]})")
            names.setdefault(b["name"], reader.line((*here, "name")))
    operators = raw.get("operators") if isinstance(raw.get("operators"), list) else []
    seen: dict[str, int] = {}
    for i, op in enumerate(operators):
        name = _dicts(op).get("name")
        if name in seen:
            add(("operators", i, "name"), f"duplicate operator name {name!r}")
        seen.setdefault(name, i)
        limited = _dicts(op).get("agents")
        if isinstance(limited, list):
            if _dicts(op).get("role") == "admin":
                add(("operators", i, "agents"), "an admin sees every agent; limit an "
                    "operator or a viewer to agents instead")
            for j, agent_name in enumerate(limited):
                if agent_name not in agents:
                    add(("operators", i, "agents", j), f"unknown agent {agent_name!r}; "
                        f"agents are: {', '.join(agents) or 'none'}")
    for account_name, account in accounts.items():
        for local, agent_name in _dicts(_dicts(account).get("inboxes")).items():
            if agent_name not in agents:
                add(("accounts", account_name, "inboxes", local),
                    f"unknown agent {agent_name!r}; agents are: {', '.join(agents) or 'none'}")
    for agent_name, agent in agents.items():
        agent = _dicts(agent)
        here = ("agents", agent_name)
        if agent.get("handler") == "http" and not agent.get("url"):
            add(here, "handler http needs a url")
        if agent.get("handler") == "openai" and not agent.get("base_url"):
            add(here, "handler openai needs a base_url")
        overrides = _dicts(agent.get("sessions"))
        try:
            SessionPolicy(**overrides)
        except ValidationError as error:
            for item in error.errors():
                loc = (*here, "sessions", *item["loc"])
                message = item["msg"].removeprefix("Value error, ")
                if item["type"] == "extra_forbidden":
                    message = "unknown key (a typo?); it would be silently ignored otherwise"
                add(loc, message)
    return problems


def _provider_problems(reader: _Reader, raw: dict[str, Any],
                       providers: Mapping[str, Provider]) -> list[Problem]:
    """What each provider's own check finds in its section and its accounts (raw values)."""
    problems: list[Problem] = []
    accounts = _dicts(raw.get("accounts"))
    for provider in providers.values():
        section = provider.section
        if section is None or section.check is None:
            continue
        mine = {name: _dicts(a) for name, a in accounts.items()
                if _dicts(a).get("provider") == provider.name}
        for issue in section.check(_dicts(raw.get(section.key)), mine):
            problems.append(Problem(reader.file, reader.line(issue.at),
                                    _dotted(issue.key or issue.at), issue.message))
    return problems


def _bindings(doc: _DocumentBase) -> tuple[Binding, ...]:
    out: list[Binding] = []
    taken: set[str] = set()
    for i, b in enumerate(doc.bindings):
        name = b.name or f"{b.agent}-{b.account}"
        if not b.name and name in taken:
            name = f"{name}-{i + 1}"
        taken.add(name)
        fields = {key: getattr(b, key) for key in type(b).model_fields if key != "name"}
        out.append(Binding(name=name, order=i, **fields))
    return tuple(out)


def _yaml_problem(file: str, error: yaml.YAMLError) -> Problem:
    """PyYAML's whole message: the problem at its line, and what it was inside of (the
    context) where that started."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    message = f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem
    context, started = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        message += f", {context}" + (f" that started on line {started.line + 1}"
                                     if started else "")
    return Problem(file, mark.line + 1 if mark else 1, "(yaml)", message)


def load_config(path: str | Path, *, strict_env: bool = True,
                providers: Mapping[str, Provider] = PROVIDERS) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem at once.

    With `strict_env=False` (what `serve` uses), a missing variable inside an account only
    disables that account, so an example config starts with no secrets set. `providers` is
    the registry whose account settings and sections the config may use.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([Problem(file, 1, "(file)", f"cannot read: {error.strerror}")]) from None
    reader = _Reader(file)
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        raise ConfigError([_yaml_problem(file, error)]) from None
    if node is None:
        raise ConfigError([Problem(file, 1, "(file)", "the file is empty; it needs agents, "
                                   "accounts and bindings (see the example bindings.yaml)")])
    raw = reader.value(node, ())
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, 1, "(top level)", "must be a mapping of sections")])
    problems = list(reader.problems)
    disabled: dict[str, str] = {}
    for var_path, name in reader.missing:
        in_account = var_path[:1] == ("accounts",) and len(var_path) >= 3
        if in_account and not strict_env:
            disabled[var_path[1]] = f"{var_path[-1]} is not set (environment variable {name})"
            continue
        problems.append(Problem(file, reader.line(var_path), _dotted(var_path),
                                f"environment variable {name} is not set"))
    problems += _reference_problems(reader, raw)
    problems += _provider_problems(reader, raw, providers)
    try:
        doc: Any = _document_model(providers).model_validate(raw)
    except ValidationError as error:
        problems += _pydantic_problems(reader, error, providers)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: p.line))
    for name, account in doc.accounts.items():
        reason = account.disabled_reason()
        if reason and name not in disabled:
            disabled[name] = reason
    return Config(
        path=file,
        agents=MappingProxyType(dict(doc.agents)),
        accounts=MappingProxyType(dict(doc.accounts)),
        bindings=_bindings(doc),
        sessions=doc.sessions,
        operators=tuple(doc.operators),
        delivery=doc.delivery,
        disabled=MappingProxyType(disabled),
        sections=MappingProxyType({p.section.key: getattr(doc, p.section.key)
                                   for p in providers.values() if p.section is not None}),
        metrics_token=doc.metrics_token,
        metrics_operators=doc.metrics_operators,
        database=doc.database,
        files=doc.files,
        public_url=doc.public_url,
        webhooks=tuple(doc.webhooks),
    )


__all__ = [
    "APP_SECRET_KEYS",
    "AgentConfig",
    "BindingConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "Duration",
    "FilesConfig",
    "OperatorConfig",
    "Problem",
    "SessionPolicy",
    "Size",
    "Timeout",
    "load_config",
    "parse_duration",
    "parse_size",
]
