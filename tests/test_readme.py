"""The README's shell blocks as a new operator pastes them (issue 20, item 2): every
`switchboard` command parses with the real CLI (its subcommands and options exist, its values
are allowed), curl gets whole URLs, and a second terminal activates the virtual environment
before it runs `switchboard`. Blocks that need the reader's own values say `# example`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from switchboard.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
PLACEHOLDERS = {"turn_…": "turn_0123", "xoxb-…": "xoxb-1", "…": "x"}


def blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def commands(block: str) -> list[list[str]]:
    """Each `switchboard …` invocation of a block (also those after `&&`)."""
    out = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in line.split("&&"):
            if not part.strip().startswith("switchboard "):
                continue
            words = shlex.split(part.strip())
            if words[:1] == ["switchboard"]:
                out.append([PLACEHOLDERS.get(w, w) for w in words[1:]])
    return out


def parse(args: list[str]) -> Any:
    """Parse as `switchboard ARGS` would, down to the command, without running it."""
    command = typer.main.get_command(app)
    ctx = command.make_context("switchboard", list(args))
    while hasattr(ctx.command, "resolve_command"):  # a group (Typer's own copy of click's)
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = ctx.command.resolve_command(ctx, rest)
        assert sub is not None, args
        ctx = sub.make_context(name or "", rest, parent=ctx)
    return ctx


def test_the_readme_has_shell_blocks_and_switchboard_commands():
    assert len(blocks()) >= 4
    assert sum(len(commands(b)) for b in blocks()) >= 5


@pytest.mark.parametrize("args", [c for b in blocks() for c in commands(b)],
                         ids=lambda args: " ".join(args))
def test_every_switchboard_command_of_the_readme_parses(args):
    parse(args)


def test_curl_gets_whole_urls_and_second_terminals_activate_the_venv():
    for block in blocks():
        for line in block.splitlines():
            if line.startswith("curl"):
                assert re.search(r"\shttps?://", line), line
        first = block.lstrip().splitlines()[0]
        if "second terminal" in first or (
                "switchboard" in block and "activate" not in block and "example" not in first):
            assert ". .venv/bin/activate" in block, block


ROOT = README.parent


def test_the_deployment_files_run_commands_that_exist():
    """The Dockerfile's entry point, the compose file and the systemd unit start `serve` with
    options it has."""
    docker = (ROOT / "Dockerfile").read_text()
    entry = re.search(r'^ENTRYPOINT \[(.*)\]$', docker, re.M)
    cmd = re.search(r'^CMD \[(.*)\]$', docker, re.M)
    assert entry and cmd
    words = [w.strip().strip('"') for w in f"{entry.group(1)}, {cmd.group(1)}".split(",")]
    assert words[:2] == ["switchboard", "serve"]
    parse(words[1:])
    assert re.search(r"^USER switchboard$", docker, re.M)  # not root
    unit = (ROOT / "deploy" / "switchboard.service").read_text()
    start = re.search(r"^ExecStart=\S+/switchboard (.*)$", unit, re.M)
    assert start
    parse(shlex.split(start.group(1)))
    assert "postgres" in (ROOT / "docker-compose.yml").read_text()
