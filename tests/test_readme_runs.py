"""The README's shell blocks, RUN in order as a new operator pastes them (issue 20, item 2), in
a fresh folder holding only the example `bindings.yaml` (what a clone gives `serve`), with bash.

What differs from a reader's machine, and why:
- The install (`python3 -m venv .venv`, `pip install -e '.[test]'`) is not run: it would take
  minutes and needs the network. `.venv/bin/activate` in the folder puts this test's own,
  already installed environment on PATH instead, so `. .venv/bin/activate` and `switchboard`
  are the README's words, run for real.
- `switchboard serve` (which the README runs in the foreground of its first terminal) is
  started in the background, waited for on /healthz, and stopped (SIGINT, as Ctrl-C) at the end.
  It gets free ports (`--port`, `--smtp-port`; the blocks' 8080 and 2525 are replaced by them) so
  tests running at once do not collide.
- The test-suite block (`python -m pytest`) is not run from here: it is the suite this test is
  part of (CI's `.ci/run` runs exactly that command).
- Blocks whose first line says `# example` need the reader's own values (a Slack app, a token)
  and are not run; tests/test_readme.py parses their commands instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import free_port
from test_readme import blocks

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"python3 -m venv \.venv && (\. \.venv/bin/activate) && "
                     r"pip install -e '\.\[test\]' && ")


def fresh_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "switchboard"
    folder.mkdir()
    shutil.copy(ROOT / "bindings.yaml", folder)
    bin_dir = Path(sys.executable).parent
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "bin" / "activate").write_text(
        f'# stands in for the installed virtual environment (see the test\'s docstring)\n'
        f'export VIRTUAL_ENV="{bin_dir.parent}" PATH="{bin_dir}:$PATH"\n')
    return folder


def shell_env() -> dict[str, str]:
    """A new shell's environment: nothing of Switchboard's set, the venv not on PATH yet."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHBOARD_", "SLACK_", "TELEGRAM_")) and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != bin_dir)
    env["NO_COLOR"] = "1"
    return env  # PYTHONPATH is kept: it points the installed package at this checkout


def test_the_readme_blocks_run_in_order_in_a_fresh_folder(tmp_path):
    folder = fresh_folder(tmp_path)
    port, smtp = free_port(), free_port()
    env = shell_env()
    served: subprocess.Popen[bytes] | None = None
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    ran = []
    try:
        for block in blocks():
            first = block.lstrip().splitlines()[0]
            if "example" in first or "python -m pytest" in block:
                continue
            block = block.replace("8080", str(port)).replace("2525", str(smtp))
            if "switchboard serve" in block:
                command = INSTALL.sub(r"\1 && ", block.strip())
                assert command != block.strip(), "the first block installs, then serves"
                served = subprocess.Popen(
                    ["bash", "-c", f"{command} --port {port} --smtp-port {smtp}"],
                    cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
                wait_healthy(f"http://127.0.0.1:{port}", served, tmp_path / "serve.log")
            else:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block],
                                      cwd=folder, env=env, capture_output=True, text=True,
                                      timeout=30)
                assert done.returncode == 0, (block, done.stdout, done.stderr)
                ran.append((block, done.stdout))
    finally:
        if served is not None and served.poll() is None:
            os.killpg(served.pid, signal.SIGINT)  # Ctrl-C in the first terminal
            try:
                served.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(served.pid, signal.SIGKILL)
        log.close()
    said = (tmp_path / "serve.log").read_text()
    # bash answers 128 + SIGINT for a command stopped by Ctrl-C
    assert served is not None and served.returncode in (0, 130, -signal.SIGINT), said[-3000:]
    assert re.search(r"\bsb_[A-Za-z0-9_-]{20,}", said)  # the admin token, printed once serving
    email = next(out for block, out in ran if "smtplib" in block)
    assert "Subject: Re: Hello" in email and "Are you there?" in email, email
    assert re.search(r"\bdelivered\b", email), email  # `turns list --provider email`


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"serve did not answer /healthz: {log.read_text()[-3000:]}")
