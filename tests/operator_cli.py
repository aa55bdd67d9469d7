"""The `switchboard` CLI through its runner, as the operator-experience tests (issue 20) run
it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from switchboard.cli import app

EXAMPLE = Path(__file__).resolve().parent.parent / "bindings.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """The CLI through its runner, with no Switchboard variable but those given."""
    environment = {"SWITCHBOARD_DATABASE_URL": "", "COLUMNS": "200", "NO_COLOR": "1",
                   **(env or {})}
    return CliRunner().invoke(app, list(args), env=environment)


def said(result: Any) -> str:
    """Everything the command printed, whitespace made single spaces."""
    return " ".join((result.stdout + result.stderr).split())
