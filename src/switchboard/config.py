"""`bindings.yaml` into typed, validated, immutable objects, with every problem at file:line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from channels.rules import Binding
from switchboard.errors import ConfigError, Problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZES = {"B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9,
          "GiB": 2**30, None: 1}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys whose values are secrets: redacted from every log line, error and answer (redact.py).
SECRET_KEYS = frozenset({
    "bot_token", "signing_secret", "app_token", "token", "webhook_secret", "relay_password",
    "api_key", "metrics_token",
})


def parse_duration(value: Any) -> timedelta | None:
    """`30s`, `30m`, `4h`, `30d`, `1w` or a number of seconds; None stays None."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use 30s, 10m, 4h or 30d")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a duration; use 30s, 10m, 4h or 30d")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


def parse_size(value: Any) -> Any:
    """`65536`, `64KiB`, `10MiB`, `1GiB` (or KB, MB, GB: powers of 1000) as a number of bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; use a number of bytes, 512KiB or 10MiB")
    if isinstance(value, int | float) or value is None:
        return value
    found = _SIZE.match(str(value))
    if not found:
        raise ValueError(f"{value!r} is not a size; use a number of bytes, 512KiB or 10MiB")
    return int(float(found.group(1)) * _SIZES[found.group(2)])


Duration = Annotated[timedelta | None, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Timeout = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]


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


class SlackAccount(_Strict):
    provider: Literal["slack"]
    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = "https://slack.com/api/"
    mode: Literal["http", "socket"] = "http"
    slash_command: str | None = None
    allow_bots: bool = False

    def disabled_reason(self) -> str | None:
        if not self.bot_token:
            return "bot_token is not set"
        if self.mode == "http" and not self.signing_secret:
            return "signing_secret is not set"
        if self.mode == "socket" and not self.app_token:
            return "app_token is not set (mode: socket needs one)"
        return None


class TelegramAccount(_Strict):
    provider: Literal["telegram"]
    token: str = ""
    webhook_secret: str = ""
    base_url: str = "https://api.telegram.org/bot"
    mode: Literal["webhook", "polling"] = "webhook"
    poll_timeout: int = Field(default=25, ge=0, le=50)

    def disabled_reason(self) -> str | None:
        if not self.token:
            return "token is not set"
        if self.mode == "webhook" and not self.webhook_secret:
            return "webhook_secret is not set (mode: webhook needs one)"
        return None


class EmailAccount(_Strict):
    provider: Literal["email"]
    domain: str = ""
    relay_host: str | None = None
    relay_port: int = 25
    relay_starttls: bool = False
    relay_username: str | None = None
    relay_password: str | None = None
    maildir: str = "./outbound-mail"
    max_message_bytes: Size = Field(default=10 * 1024 * 1024, ge=1024)
    sender_auth: Literal["none", "authentication-results", "dkim"] = "none"
    authserv_id: str | None = None
    dns_resolver: str | None = None  # where `sender_auth: dkim` asks for keys: IP[:port]
    dns_timeout: Timeout = timedelta(seconds=5)
    inboxes: dict[str, str] = {}  # local part -> agent, provisioned when serve starts

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value is not None:
            from inbox.dns import parse_resolver  # only then: the CLI need not load inbox

            parse_resolver(value)
        return value

    def disabled_reason(self) -> str | None:
        return None if self.domain else "domain is not set"


class SmtpConfig(_Strict):
    """What the one SMTP server of `serve` (all email accounts) holds at once, and how long."""

    max_sessions: int = Field(default=50, ge=1)  # connections beyond this hear 421
    max_inflight_bytes: Size = Field(default=64 * 2**20, ge=1024)  # DATA held by all sessions
    max_line_bytes: Size = Field(default=64 * 2**10, ge=1001, le=2**24)
    idle_timeout: Timeout = timedelta(minutes=5)  # silence between commands or DATA lines
    data_timeout: Timeout = timedelta(minutes=10)  # one DATA, however slowly it trickles
    session_timeout: Timeout = timedelta(minutes=30)  # one connection, however busy


AccountConfig = Annotated[
    SlackAccount | TelegramAccount | EmailAccount, Field(discriminator="provider")
]


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


class OperatorConfig(_Strict):
    name: str
    role: Literal["viewer", "operator", "admin"] = "viewer"
    token: str = ""


class DeliveryConfig(_Strict):
    max_attempts: int = Field(default=6, ge=1)
    backoff: Duration = timedelta(seconds=1)
    max_backoff: Duration = timedelta(minutes=5)
    agent_concurrency: int = Field(default=16, ge=1)
    workers: int = Field(default=16, ge=1)  # turns worked on at once, per process
    lease: Duration = timedelta(seconds=30)  # how long one delivery attempt may hold its row
    worker_timeout: Duration = timedelta(seconds=15)  # silence after which a process is dead


class _Document(_Strict):
    agents: dict[str, AgentConfig] = {}
    accounts: dict[str, AccountConfig] = {}
    bindings: list[BindingConfig] = []
    sessions: SessionPolicy = SessionPolicy()
    operators: list[OperatorConfig] = []
    delivery: DeliveryConfig = DeliveryConfig()
    smtp: SmtpConfig = SmtpConfig()
    metrics_token: str = ""  # when set, /metrics needs `Authorization: Bearer <it>`
    metrics_operators: bool = False  # /metrics also (or only) takes any operator's token


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. `disabled` maps account names to why they are off."""

    path: str
    agents: Mapping[str, AgentConfig]
    accounts: Mapping[str, SlackAccount | TelegramAccount | EmailAccount]
    bindings: tuple[Binding, ...]
    sessions: SessionPolicy
    operators: tuple[OperatorConfig, ...]
    delivery: DeliveryConfig
    disabled: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    metrics_token: str = ""
    metrics_operators: bool = False

    def secrets(self) -> set[str]:
        """Every value of a secret-bearing key (`SECRET_KEYS`) anywhere in the config."""
        found: set[str] = {self.metrics_token}
        for model in (*self.accounts.values(), *self.agents.values(), *self.operators):
            found.update(str(v) for k, v in model.model_dump().items()
                         if k in SECRET_KEYS and v)
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


def _pydantic_problems(reader: _Reader, error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        if loc[:1] == ("accounts",) and len(loc) > 2 and loc[2] in {"slack", "telegram", "email"}:
            loc = loc[:2] + loc[3:]  # drop the discriminator pydantic inserts
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo?); it would be silently ignored otherwise"
        elif item["type"] == "union_tag_invalid":
            loc = (*loc, "provider")
            message = (f"unknown provider {item.get('input', {}).get('provider')!r}; "
                       "use one of slack, telegram, email")
        elif item["type"] == "union_tag_not_found":
            loc = (*loc, "provider")
            message = "provider is required: one of slack, telegram, email"
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


def _capacity_problems(reader: _Reader, raw: dict[str, Any]) -> list[Problem]:
    """An SMTP server whose in-flight budget is smaller than a message an account takes would
    answer that message 452 forever."""
    smtp = _dicts(raw.get("smtp"))
    try:
        budget = parse_size(smtp.get("max_inflight_bytes", SmtpConfig().max_inflight_bytes))
    except ValueError:
        return []  # reported by the model
    problems: list[Problem] = []
    for name, account in _dicts(raw.get("accounts")).items():
        account = _dicts(account)
        if account.get("provider") != "email":
            continue
        try:
            largest = parse_size(account.get("max_message_bytes", 10 * 1024 * 1024))
        except ValueError:
            continue
        if isinstance(budget, int) and isinstance(largest, int) and budget < largest:
            path = ("smtp", "max_inflight_bytes") if "max_inflight_bytes" in smtp else \
                ("accounts", name, "max_message_bytes")
            problems.append(Problem(
                reader.file, reader.line(path), "smtp.max_inflight_bytes",
                f"{budget} bytes is less than max_message_bytes of account {name} ({largest}): "
                "one such message could never be taken; raise max_inflight_bytes or lower "
                "max_message_bytes"))
    return problems


def _bindings(doc: _Document) -> tuple[Binding, ...]:
    out: list[Binding] = []
    taken: set[str] = set()
    for i, b in enumerate(doc.bindings):
        name = b.name or f"{b.agent}-{b.account}"
        if not b.name and name in taken:
            name = f"{name}-{i + 1}"
        taken.add(name)
        fields = b.model_dump(exclude={"name"})
        out.append(Binding(name=name, order=i, **fields))
    return tuple(out)


def load_config(path: str | Path, *, strict_env: bool = True) -> Config:
    """Read and validate `path`; raise ConfigError listing every problem at once.

    With `strict_env=False` (what `serve` uses), a missing variable inside an account only
    disables that account, so an example config starts with no secrets set.
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
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError([Problem(file, line, "(yaml)", str(error).splitlines()[0])]) from None
    raw = reader.value(node, ()) if node is not None else {}
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
    problems += _capacity_problems(reader, raw)
    try:
        doc = _Document.model_validate(raw)
    except ValidationError as error:
        problems += _pydantic_problems(reader, error)
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
        smtp=doc.smtp,
        metrics_token=doc.metrics_token,
        metrics_operators=doc.metrics_operators,
    )
