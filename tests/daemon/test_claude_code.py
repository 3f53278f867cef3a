"""The real Claude Code CLI (npm @anthropic-ai/claude-code), headless and offline, against the real daemon: it prints
specd's answer, its second turn (`--continue`) reads the first turn's prompt from specd's cache, and a model whose
context cannot hold its prompt gets a clear error naming the context size.

How it runs offline (../shared/notes/cli-clients.md): `ANTHROPIC_BASE_URL` + `ANTHROPIC_AUTH_TOKEN` (Bearer) and
`CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, HOME and TMPDIR in a temporary folder. Its first request is about
76 KB: a 5.6k-character system prompt, two dozen tools, a role "system" message, max_tokens 32000, streamed. The
model is a tiny scripted chat model (tests/fixtures/tiny_models.py) whose context holds that and whose every answer is
ANSWER, so the test knows what the CLI must print. `.ci/run` installs the CLI; without it the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from .conftest import specd_env, start_real_daemon, stop_real_daemon

CI_INSTALL = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "specd-ci/claude-code/node_modules/.bin/claude"
CLAUDE = os.environ.get("SPECD_TEST_CLAUDE") or shutil.which("claude") or (str(CI_INSTALL) if CI_INSTALL.exists() else None)


def _broken(claude: str | None) -> str | None:
    """Why `claude` cannot run (an install without its postinstall has only a stub that says so), or None."""
    if claude is None:
        return "Claude Code is not installed (npm install --prefix ~/.cache/specd-ci/claude-code @anthropic-ai/claude-code; .ci/run does)"
    try:
        done = subprocess.run([claude, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{claude} --version failed: {e}"
    return None if done.returncode == 0 else f"{claude} --version failed: {(done.stdout + done.stderr).strip()[:300]}"


NOT_RUNNABLE = _broken(CLAUDE)
ANSWER = "Hello from specd!"
LONG_CONTEXT = 32768  # Claude Code's first turn is about 26,000 tokens with the scripted model's tokenizer
SHORT_CONTEXT = 4096

pytestmark = pytest.mark.skipif(NOT_RUNNABLE is not None, reason=str(NOT_RUNNABLE))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from tests.fixtures.tiny_models import write_scripted_chat_model

    return write_scripted_chat_model(tmp_path_factory.mktemp("claude-code") / "scripted", ANSWER,
                                     max_positions=LONG_CONTEXT)


def daemon_with_context(tmp_path_factory, model: Path, context: int):
    home = tmp_path_factory.mktemp("specd-home")
    args = ["--port", "0", "--verifier", str(model), "--device", "cpu", "--max-context", str(context),
            "--request-timeout", "300"]
    return start_real_daemon(home, specd_env(home), args)


@pytest.fixture(scope="module")
def long_daemon(tmp_path_factory, model):
    started = daemon_with_context(tmp_path_factory, model, LONG_CONTEXT)
    yield started
    stop_real_daemon(started)


def claude(daemon, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    home = workdir / "home"
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(HOME=str(home), TMPDIR=str(workdir / "tmp"), ANTHROPIC_BASE_URL=daemon.url,
               ANTHROPIC_AUTH_TOKEN=daemon.token, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    return subprocess.run([CLAUDE, *args, "--model", "specd"], cwd=workdir, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_claude_code_prints_specds_answer_and_its_second_turn_reads_the_prompt_from_cache(long_daemon, tmp_path,
                                                                                           capsys):
    sdk = anthropic.Anthropic(base_url=long_daemon.url, api_key=long_daemon.token, max_retries=0)
    direct = sdk.messages.create(model="specd", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
    assert direct.content[0].text == ANSWER  # what specd answers, asked directly

    first = claude(long_daemon, tmp_path, "-p", "say hello", "--output-format", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    turn1 = json.loads(first.stdout)
    assert turn1["result"] == ANSWER and turn1["stop_reason"] == "end_turn"
    assert turn1["usage"]["input_tokens"] > 10_000  # its long system prompt and tools, all in the context

    second = claude(long_daemon, tmp_path, "-p", "and again", "--continue", "--output-format", "json")
    assert second.returncode == 0, second.stdout + second.stderr
    turn2 = json.loads(second.stdout)
    assert turn2["result"] == ANSWER and turn2["session_id"] == turn1["session_id"]
    usage = turn2["usage"]
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    with capsys.disabled():
        print(f"\nClaude Code's second turn: {usage['cache_read_input_tokens']} of {prompt} prompt tokens from "
              f"specd's cache ({usage['cache_read_input_tokens'] / prompt:.1%})")
    assert usage["cache_read_input_tokens"] >= 0.9 * prompt


def test_a_context_too_small_for_claude_codes_prompt_is_a_clear_error(tmp_path_factory, model, tmp_path):
    daemon = daemon_with_context(tmp_path_factory, model, SHORT_CONTEXT)
    try:
        done = claude(daemon, tmp_path, "-p", "say hello")
    finally:
        stop_real_daemon(daemon)
    assert done.returncode != 0
    # specd's 400 starts as Anthropic's ("prompt is too long: N tokens > M maximum"), so Claude Code knows it for an
    # overflow and says so itself (before, it printed "API Error: 400" and could not compact a long session)
    assert "Prompt is too long" in done.stdout and f"(limit {SHORT_CONTEXT})" in done.stdout, done.stdout + done.stderr


def test_specd_config_claude_code_writes_settings_that_claude_code_runs_on_alone(long_daemon, tmp_path):
    """`specd config claude-code --write` merges into an existing ~/.claude/settings.json (its other content kept, a
    backup made); Claude Code started with no ANTHROPIC_* variables then answers from specd."""
    home = tmp_path / "home"
    settings = home / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True)
    mine = {"permissions": {"allow": ["Bash(ls:*)"]}, "env": {"MY_VARIABLE": "kept"}, "theme": "dark"}
    settings.write_text(json.dumps(mine, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(HOME=str(home), SPECD_HOME=str(long_daemon.home))
    config = [sys.executable, "-m", "specd.daemon.cli", "config", "claude-code"]
    printed = subprocess.run(config, env=env, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["env"]["ANTHROPIC_BASE_URL"] == long_daemon.url
    assert long_daemon.token not in printed.stdout  # the token stays in specd's token file
    written = subprocess.run(config + ["--write"], env=env, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0, written.stderr
    merged = json.loads(settings.read_text())
    assert merged["permissions"] == mine["permissions"] and merged["theme"] == "dark"
    assert merged["env"]["MY_VARIABLE"] == "kept" and merged["env"] == {**json.loads(printed.stdout)["env"], "MY_VARIABLE": "kept"}
    [backup] = settings.parent.glob("settings.json.specd-backup-*")
    assert json.loads(backup.read_text()) == mine

    (tmp_path / "tmp").mkdir()
    done = subprocess.run([CLAUDE, "-p", "say hello"], cwd=tmp_path, env={**env, "TMPDIR": str(tmp_path / "tmp")},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ANSWER
