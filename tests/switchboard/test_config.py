"""`bindings.yaml` into validated, immutable objects; `switchboard check` as an operator runs it."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from switchboard.config import load_config, parse_duration
from switchboard.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "bindings.yaml"
PROBLEM = re.compile(r"^error (?P<file>.+):(?P<line>\d+): (?P<key>\S+): (?P<message>.+)$")


def write(tmp_path: Path, text: str, name: str = "bindings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Switchboard, Slack or Telegram settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_", "SWITCHBOARD_", "SB_TEST_"))
           and k not in {"FORCE_COLOR", "CLICOLOR_FORCE"}}
    return {**env, "NO_COLOR": "1", **extra}


def check(path: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard", "check", "--config", str(path)],
                          cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=60)


def problems_of(error: ConfigError) -> list[tuple[int, str]]:
    return [(p.line, p.key) for p in error.problems]


@pytest.fixture(autouse=True)
def no_settings_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "TELEGRAM_", "SWITCHBOARD_", "SB_TEST_")):
            monkeypatch.delenv(name)


# --- switchboard check ---------------------------------------------------------------------


def test_example_config_passes_check_with_no_environment(tmp_path):
    result = check(EXAMPLE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    # (issue 20: check says what serve will do, in serve's words; "1 agent")
    assert "account slack-acme will start disabled: bot_token is not set" in out
    assert "account tg will start disabled: token is not set" in out
    assert "account mail will start disabled" not in out
    assert "ok (1 agent, 3 accounts, 3 bindings)" in out
    assert "error" not in result.stderr


MANY_PROBLEMS = """
agents:
  triager:
    handler: echo
accounts:
  slack-acme:
    provider: slack
    bot_token: ${SB_TEST_NOPE}
    signing_secret: s3cret
    colour: blue
  pigeon:
    provider: carrier-pigeon
bindings:
  - name: triage
    agent: ghost
    account: slack-acme
  - name: triage
    agent: triager
    account: nowhere
    mentoins: true
sessions:
  idle_timeout: 30x
"""

EXPECTED = [
    (7, "accounts.slack-acme.bot_token", "environment variable SB_TEST_NOPE is not set"),
    (9, "accounts.slack-acme.colour", "unknown key"),
    (11, "accounts.pigeon.provider", "use one of slack, telegram, email"),
    (14, "bindings[0].agent", "unknown agent 'ghost'; agents are: triager"),
    (16, "bindings[1].name", "duplicate binding name 'triage' (first at line 13)"),
    (18, "bindings[1].account", "unknown account 'nowhere'; accounts are: slack-acme, pigeon"),
    (19, "bindings[1].mentoins", "unknown key"),
    (21, "sessions.idle_timeout", "'30x' is not a duration"),
]


def test_check_reports_every_problem_with_file_line_and_key(tmp_path):
    path = write(tmp_path, MANY_PROBLEMS)
    result = check(path, tmp_path)
    assert result.returncode == 1
    assert "ok (" not in result.stdout
    found = [PROBLEM.match(line) for line in result.stderr.splitlines() if line.strip()]
    assert all(found), result.stderr
    assert {m["file"] for m in found} == {str(path)}
    # (issue 20: check validates as serve does, so a missing variable in an account disables
    # that account rather than failing the config; load_config's strict default still fails)
    expected = EXPECTED[1:]
    assert [(int(m["line"]), m["key"]) for m in found] == [(ln, k) for ln, k, _ in expected]
    for m, (_, _, words) in zip(found, expected, strict=True):
        assert words in m["message"], (m["message"], words)


def test_load_config_raises_the_same_problems_in_line_order(tmp_path):
    path = write(tmp_path, MANY_PROBLEMS)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problems_of(caught.value) == [(ln, k) for ln, k, _ in EXPECTED]
    assert str(caught.value).splitlines()[0] == (
        f"{path}:7: accounts.slack-acme.bot_token: environment variable SB_TEST_NOPE is not set")


def test_check_passes_once_the_variable_is_set(tmp_path):
    path = write(tmp_path, """
        agents: {triager: {handler: echo}}
        accounts:
          slack-acme: {provider: slack, bot_token: "${SB_TEST_TOKEN}", signing_secret: s}
        bindings: [{agent: triager, account: slack-acme}]
    """)
    result = check(path, tmp_path, SB_TEST_TOKEN="xoxb-1")
    assert result.returncode == 0, result.stderr
    assert "disabled" not in result.stdout


def test_missing_file_and_broken_yaml_are_problems_too(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert caught.value.problems[0].key == "(file)"
    assert "cannot read" in caught.value.problems[0].message
    path = write(tmp_path, "agents:\n  triager: {handler: echo\nbindings: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (3, "(yaml)")


def test_duplicate_yaml_key_is_a_problem(tmp_path):
    path = write(tmp_path, """
        agents:
          triager: {handler: echo}
          triager: {handler: http, url: "http://x"}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problems_of(caught.value) == [(3, "agents.triager")]


def test_bad_provider_points_at_the_provider_line(tmp_path):
    path = write(tmp_path, """
        accounts:
          pigeon:
            domain: example.org
            provider: carrier-pigeon
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problems_of(caught.value) == [(4, "accounts.pigeon.provider")]


def test_missing_provider_says_which_providers_exist(tmp_path):
    path = write(tmp_path, """
        accounts:
          mail:
            domain: example.org
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert "provider" in problem.key + problem.message
    assert "slack, telegram, email" in problem.message


def test_problem_about_an_agent_points_at_the_agent_or_its_handler(tmp_path):
    path = write(tmp_path, """
        agents:
          helpdesk:
            model: small
            handler: http
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert problem.key == "agents.helpdesk" and "needs a url" in problem.message
    assert problem.line in {2, 4}  # the agent's name, or `handler: http`; not `model: small`


# --- interpolation ----------------------------------------------------------------------------


INTERPOLATED = """
agents:
  triager: {handler: echo, model: "${SB_TEST_MODEL:-small}"}
accounts:
  slack-acme:
    provider: slack
    bot_token: ${SB_TEST_TOKEN}
    signing_secret: "${SB_TEST_SECRET:-}"
    api_url: "http://${SB_TEST_HOST:-127.0.0.1}:${SB_TEST_PORT:-9}/api/"
bindings: [{agent: triager, account: slack-acme}]
"""


def test_variables_are_replaced_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_TOKEN", "xoxb-real")
    monkeypatch.setenv("SB_TEST_SECRET", "shh")
    monkeypatch.setenv("SB_TEST_HOST", "slack.internal")
    monkeypatch.setenv("SB_TEST_MODEL", "large")
    config = load_config(write(tmp_path, INTERPOLATED))
    account = config.accounts["slack-acme"]
    assert account.bot_token == "xoxb-real"
    assert account.signing_secret == "shh"
    assert account.api_url == "http://slack.internal:9/api/"
    assert config.agents["triager"].model == "large"
    assert config.disabled == {}


def test_defaults_apply_when_the_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_TOKEN", "xoxb-real")
    config = load_config(write(tmp_path, INTERPOLATED))
    account = config.accounts["slack-acme"]
    assert account.signing_secret == ""
    assert account.api_url == "http://127.0.0.1:9/api/"
    assert config.agents["triager"].model == "small"
    assert config.disabled == {"slack-acme": "signing_secret is not set"}


def test_missing_variable_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, INTERPOLATED))
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (6, "accounts.slack-acme.bot_token")
    assert problem.message == "environment variable SB_TEST_TOKEN is not set"


def test_without_strict_env_a_missing_secret_disables_only_its_account(tmp_path):
    path = write(tmp_path, """
        agents: {triager: {handler: echo}}
        accounts:
          slack-acme: {provider: slack, bot_token: "${SB_TEST_NOPE}", signing_secret: s}
          tg: {provider: telegram, token: t, webhook_secret: w}
        bindings: [{agent: triager, account: slack-acme}, {agent: triager, account: tg}]
    """)
    config = load_config(path, strict_env=False)
    assert config.disabled == {
        "slack-acme": "bot_token is not set (environment variable SB_TEST_NOPE)"}
    with pytest.raises(ConfigError):
        load_config(path)


def test_without_strict_env_a_missing_variable_outside_accounts_is_still_an_error(tmp_path):
    path = write(tmp_path, """
        operators:
          - {name: admin, role: admin, token: "${SB_TEST_ADMIN}"}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path, strict_env=False)
    assert problems_of(caught.value) == [(2, "operators[0].token")]


def test_default_applies_when_the_variable_is_set_but_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_TOKEN", "xoxb-real")
    monkeypatch.setenv("SB_TEST_HOST", "")
    config = load_config(write(tmp_path, INTERPOLATED))
    assert config.accounts["slack-acme"].api_url == "http://127.0.0.1:9/api/"


# --- the example, sessions policy, immutability ----------------------------------------------


def test_example_config_loads_with_accounts_disabled_and_bindings_in_order():
    config = load_config(EXAMPLE, strict_env=False)
    assert config.disabled == {"slack-acme": "bot_token is not set", "tg": "token is not set"}
    assert [(b.name, b.order) for b in config.bindings] == [
        ("triage-slack", 0), ("triage-telegram", 1), ("triage-mail", 2)]
    slack = config.bindings[0]
    assert (slack.follow_threads, slack.session_scope) == (True, "thread")
    assert config.sessions.idle_timeout == timedelta(minutes=30)
    assert config.sessions.auto_archive_after == timedelta(days=30)
    assert config.operators[0].token == ""


def test_unnamed_bindings_get_distinct_names(tmp_path):
    path = write(tmp_path, """
        agents: {triager: {handler: echo}}
        accounts: {mail: {provider: email, domain: example.org}}
        bindings:
          - {agent: triager, account: mail}
          - {agent: triager, account: mail, dm: false}
    """)
    names = [b.name for b in load_config(path).bindings]
    assert names[0] == "triager-mail" and len(set(names)) == 2


SESSIONS = """
agents:
  triager: {handler: echo}
  helper:
    handler: echo
    sessions:
      idle_timeout: 5m
      max_concurrent_per_user: 2
sessions:
  idle_timeout: 30m
  max_duration: 2h
"""


def test_agent_sessions_override_the_global_policy(tmp_path):
    config = load_config(write(tmp_path, SESSIONS))
    helper = config.policy_for("helper")
    assert helper.idle_timeout == timedelta(minutes=5)
    assert helper.max_concurrent_per_user == 2
    assert helper.max_duration == timedelta(hours=2)  # inherited from the global policy
    assert config.policy_for("triager") == config.sessions
    assert config.policy_for("nobody") == config.sessions
    assert config.sessions.idle_timeout == timedelta(minutes=30)


def test_bad_agent_session_override_is_reported_at_its_line(tmp_path):
    path = write(tmp_path, SESSIONS.replace("idle_timeout: 5m", "idle_timeout: 30x")
                 .replace("max_concurrent_per_user: 2", "max_concurent_per_user: 2"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert problems_of(caught.value) == [(6, "agents.helper.sessions.idle_timeout"),
                                         (7, "agents.helper.sessions.max_concurent_per_user")]


def test_config_and_its_parts_are_frozen(tmp_path):
    config = load_config(EXAMPLE, strict_env=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.path = "elsewhere.yaml"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.bindings[0].dm = False  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.sessions.idle_timeout = timedelta(0)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.agents["triager"].model = "huge"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.accounts["mail"].domain = "evil.example"  # type: ignore[misc]
    assert isinstance(config.bindings, tuple) and isinstance(config.operators, tuple)


def test_config_mappings_cannot_be_changed_after_load():
    config = load_config(EXAMPLE, strict_env=False)
    with pytest.raises(TypeError):
        config.disabled["mail"] = "switched off behind the operator's back"  # type: ignore[index]


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)),
    ("10m", timedelta(minutes=10)),
    ("4h", timedelta(hours=4)),
    ("30d", timedelta(days=30)),
    ("1w", timedelta(weeks=1)),
    ("1.5h", timedelta(minutes=90)),
    ("250ms", timedelta(milliseconds=250)),
    (" 5 m ", timedelta(minutes=5)),
    ("45", timedelta(seconds=45)),
    (90, timedelta(seconds=90)),
    (2.5, timedelta(seconds=2.5)),
    (None, None),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30x", "", "m", "ten minutes", "5 mins", "1h30m", True])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration; use 30s, 10m, 4h or 30d"):
        parse_duration(text)


def test_durations_in_the_config(tmp_path):
    path = write(tmp_path, """
        sessions: {idle_timeout: 90, max_duration: 1w, keep_alive: null}
        delivery: {backoff: 250ms}
    """)
    config = load_config(path)
    assert config.sessions.idle_timeout == timedelta(seconds=90)
    assert config.sessions.max_duration == timedelta(weeks=1)
    assert config.sessions.keep_alive is None
    assert config.delivery.backoff == timedelta(milliseconds=250)
