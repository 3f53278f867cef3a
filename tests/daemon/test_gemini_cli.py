"""The real Gemini CLI (npm @google/gemini-cli), headless and offline, against the real daemon: it prints specd's
answer, its second turn (`--resume latest`) reads the first turn's prompt from specd's cache, a function call specd
answers runs the CLI's tool and its result comes back as a functionResponse, and a model whose context cannot hold
its ~30,000-character system prompt gets a clear error in Google's shape naming the context.

How it runs offline (../shared/notes/cli-clients.md): `GOOGLE_GEMINI_BASE_URL` + `GEMINI_API_KEY`, auth type
`gemini-api-key` and usage statistics off in HOME/.gemini/settings.json, a trusted workspace, and `-m` always
(without it the CLI first asks a router model). A recording proxy between the CLI and specd keeps what specd sent,
so the test can compare it with what the CLI printed. `.ci/run` installs the CLI; without it the test skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from .conftest import specd_env, start_real_daemon, stop_real_daemon

CI_INSTALL = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "specd-ci/gemini-cli/node_modules/.bin/gemini"
GEMINI = os.environ.get("SPECD_TEST_GEMINI") or shutil.which("gemini") or (str(CI_INSTALL) if CI_INSTALL.exists() else None)
LONG_CONTEXT = 32768  # the CLI's first turn is ~18,700 tokens with the tiny test tokenizer

pytestmark = pytest.mark.skipif(GEMINI is None, reason="the Gemini CLI is not installed "
                                "(npm install --prefix ~/.cache/specd-ci/gemini-cli @google/gemini-cli; .ci/run does)")


def tiny_model(folder: Path, positions: int) -> Path:
    from tests.fixtures.tiny_models import write_tiny_llama

    write_tiny_llama(folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = positions  # rotary positions: any length works, the config sets the limit
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def long_model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("gemini-cli") / "tiny-long", LONG_CONTEXT)


@pytest.fixture(scope="module")
def long_daemon(long_model):
    home = long_model.parent / "specd-home"
    started = start_real_daemon(home, specd_env(home), ["--port", "0", "--verifier", str(long_model), "--device",
                                                        "cpu", "--max-context", str(LONG_CONTEXT), "--request-timeout",
                                                        "600"])
    yield started
    stop_real_daemon(started)


class Recorder:
    """A pass-through proxy that keeps each request's body and each streamed answer's bytes."""

    def __init__(self, target: str) -> None:
        self.target, self.answers, self.paths, self.requests = target, [], [], []

    async def forward(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        body = await request.read()
        self.requests.append(json.loads(body))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as s, s.post(self.target + request.path_qs, data=body,
                                                         headers=headers) as upstream:
            response = web.StreamResponse(status=upstream.status,
                                          headers={"Content-Type": upstream.headers["Content-Type"]})
            await response.prepare(request)
            recorded = b""
            async for chunk in upstream.content.iter_any():
                recorded += chunk
                await response.write(chunk)
            self.answers.append(recorded)
            await response.write_eof()
            return response


# The CLI prints its answer through strip-ansi (packages/core/src/output/json-formatter.ts); this is the pattern of
# npm ansi-regex 6 that it bundles. The tiny model's sampled text can hold C1 controls such as U+009B (CSI).
_ST = r"(?:\x07|\x1b\\|\x9c)"
ANSI_ESCAPE = re.compile(rf"(?:\x1b\][\s\S]*?{_ST})"
                         r"|[\x1b\x9b][\[\]()#;?]*(?:[0-9]{1,4}(?:[;:][0-9]{0,4})*)?[0-9A-PR-TZcf-nq-uy=><~]")


def as_the_cli_prints(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


def streamed_text(answer: bytes) -> tuple[str, dict]:
    events = [json.loads(line[6:]) for line in answer.decode().splitlines() if line.startswith("data: ")]
    text = "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"])
    return text, events[-1]["usageMetadata"]


def empty_to_the_cli(text: str) -> bool:
    """The CLI's test for an answer with no text (processStreamResponse in packages/core/src/core/geminiChat.ts)."""
    text = re.sub(r"[\u200B-\u200D\uFEFF\u200E\u200F]", "", text)
    return not re.sub(r"<!--[\s\S]*?-->", "", text).strip()


def accepted_answer(recorder: Recorder, model: str) -> tuple[str, dict]:
    """The streamed answer the CLI printed. The tiny model samples at temperature 1 and may answer nothing (its end
    token first); the CLI then asks once more with a nudge appended, so every answer before the last must be empty."""
    assert recorder.paths and set(recorder.paths) == {f"/v1beta/models/{model}:streamGenerateContent?alt=sse"}
    answers = [streamed_text(answer) for answer in recorder.answers]
    assert all(empty_to_the_cli(text) for text, _ in answers[:-1]), answers
    return answers[-1]


def summed(recorder: Recorder, count: str) -> int:
    """A usage count added up over every answer the CLI got in one run, as its printed stats add them."""
    return sum(streamed_text(answer)[1].get(count, 0) for answer in recorder.answers)


def prompt_ids(tokenizer, body: dict) -> list[int]:
    """The prompt specd's verifier reads for a generateContent body: the Gemini door's messages, rendered as the
    engine renders a chat (the tiny model has no chat template: a plain transcript) and tokenized."""
    from types import SimpleNamespace

    from specd.daemon.api.gemini_schema import parse_generate
    from specd.daemon.engine.loop import Engine

    parsed = parse_generate(body)
    prompt = Engine.apply_chat_template(SimpleNamespace(tokenizer=tokenizer), parsed.messages, parsed.tools)
    return tokenizer(prompt)["input_ids"]


async def run_gemini(daemon, workdir: Path, model: str, *args: str, config: dict | None = None,
                     model_settings: dict | None = None) -> tuple[int, str, str, Recorder]:
    """Run the CLI on `model` through a Recorder; `config` goes into its generateContentConfig override,
    `model_settings` into settings.json's `model`."""
    recorder = Recorder(daemon.url)
    app = web.Application()
    app.router.add_post("/{tail:.*}", recorder.forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    home = workdir.parent / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    # The CLI sends temperature 1 and no token limit; its model-config override bounds the tiny model's answer.
    override = {"match": {"model": model}, "modelConfig": {"generateContentConfig": {"maxOutputTokens": 48,
                                                                                      **(config or {})}}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(
        {"security": {"auth": {"selectedType": "gemini-api-key"}}, "privacy": {"usageStatisticsEnabled": False},
         "modelConfigs": {"customOverrides": [override]}, "model": model_settings or {}}))
    (workdir.parent / "tmp").mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(workdir.parent / "tmp"),
           "GEMINI_CLI_TRUST_WORKSPACE": "true", "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
           "GEMINI_API_KEY": daemon.token}
    try:
        process = await asyncio.create_subprocess_exec(
            GEMINI, *args, "-m", model, cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=400)
    finally:
        await runner.cleanup()
    return process.returncode, out.decode(), err.decode(), recorder


def test_the_cli_prints_specds_answer_and_its_second_turn_reuses_the_cache(long_daemon, long_model, tmp_path):
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "main.py").write_text("print('hello')\n")
    model = "tiny-long"  # the folder's name, as specd serves it

    code, out, err, recorder = asyncio.run(run_gemini(long_daemon, workdir, model, "-p", "say hello", "-o", "json"))
    assert code == 0, err
    printed = json.loads(out)
    text, usage = accepted_answer(recorder, model)
    assert text.strip() and printed["response"] == as_the_cli_prints(text)
    tokens = printed["stats"]["models"][model]["tokens"]
    assert usage["promptTokenCount"] > 10_000  # its system prompt and tools fit the context
    # The CLI's stats add up the turn's requests (an empty answer is asked again: accepted_answer)
    assert tokens["prompt"] == summed(recorder, "promptTokenCount")
    assert tokens["candidates"] == summed(recorder, "candidatesTokenCount") and usage["candidatesTokenCount"] <= 48

    code, out, err, again = asyncio.run(run_gemini(long_daemon, workdir, model, "-p", "and again", "-o", "json",
                                                   "--resume", "latest"))
    assert code == 0, err
    text, usage = accepted_answer(again, model)
    assert json.loads(out)["response"] == as_the_cli_prints(text)
    assert json.loads(out)["stats"]["models"][model]["tokens"]["cached"] == summed(again, "cachedContentTokenCount")
    # specd reads from its cache every token the second turn's prompt shares with the request before it. How many
    # that is depends on the CLI: it lists its two built-in skills in its system prompt in the order its glob (unsorted,
    # asynchronous) finds them, which flips now and then on a busy machine; the prompts then part at the first
    # skill's name, half way (a CI run: 9,668 of 19,023 tokens cached, every token the two prompts shared).
    from transformers import AutoTokenizer

    from specd.daemon.engine.kv_cache import common_prefix_length

    tokenizer = AutoTokenizer.from_pretrained(long_model)
    prompts = [prompt_ids(tokenizer, body) for body in recorder.requests + again.requests]
    assert len(prompts[-1]) == usage["promptTokenCount"]  # specd read the prompt as rendered here
    # The conversation's cache holds the request before this one (after an empty answer, the CLI's retry with a
    # nudge, which the next turn does not repeat: a CI run cached 18,959 tokens, shared with the retry, of the
    # 18,965 the first request shared)
    shared = common_prefix_length(prompts[-2], prompts[-1])
    assert usage["cachedContentTokenCount"] >= min(shared, len(prompts[-1]) - 1), (usage, shared)
    if recorder.requests[-1]["systemInstruction"] == again.requests[-1]["systemInstruction"]:
        assert shared >= 0.9 * len(prompts[-1]), (usage, shared)  # the second turn extends the first


def test_a_context_too_small_for_the_cli_is_a_clear_error(tmp_path):
    model = tiny_model(tmp_path / "tiny-short", 2048)
    home = tmp_path / "specd-home"
    daemon = start_real_daemon(home, specd_env(home), ["--port", "0", "--verifier", str(model), "--device", "cpu",
                                                       "--max-context", "2048"])
    try:
        workdir = tmp_path / "project"
        workdir.mkdir()
        code, out, err, _ = asyncio.run(run_gemini(daemon, workdir, model.name, "-p", "say hello"))
    finally:
        stop_real_daemon(daemon)
    assert code != 0
    assert "INVALID_ARGUMENT" in err and "the context window is 2048 tokens" in err, err


def test_the_cli_runs_the_function_call_specd_answers_and_sends_back_its_result(tmp_path):
    """A function call from specd reaches the CLI's tool scheduler: the CLI forces a call to its read_file tool
    (mode ANY through its model-config override), the scripted chat model (whose template renders the CLI's tools)
    writes `main.py` as the path, the CLI reads the file and sends its text back as a functionResponse answering
    that call. The model calls again every turn, so the CLI's session-turn limit ends the run."""
    from tests.fixtures.tiny_models import write_scripted_chat_model

    model = write_scripted_chat_model(tmp_path / "scripted", 'main.py"}', max_positions=LONG_CONTEXT)
    home = tmp_path / "specd-home"
    daemon = start_real_daemon(home, specd_env(home), ["--port", "0", "--verifier", str(model), "--device", "cpu",
                                                       "--max-context", str(LONG_CONTEXT), "--request-timeout",
                                                       "600"])
    forced = {"temperature": 0, "toolConfig": {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["read_file"]}}}
    try:
        workdir = tmp_path / "project"
        workdir.mkdir()
        (workdir / "main.py").write_text("print('hello from main')\n")
        code, out, err, recorder = asyncio.run(run_gemini(daemon, workdir, model.name, "-p", "read main.py",
                                                          config=forced, model_settings={"maxSessionTurns": 2}))
    finally:
        stop_real_daemon(daemon)
    assert code == 53 and "Reached max session turns" in err, (code, out, err)  # the CLI's FatalTurnLimitedError
    assert len(recorder.requests) == 2, recorder.paths
    events = [json.loads(line[6:]) for line in recorder.answers[0].decode().splitlines() if line.startswith("data: ")]
    (call,) = [p["functionCall"] for e in events for p in e["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert call["name"] == "read_file" and call["args"] == {"file_path": "main.py"}
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    first = recorder.requests[0]
    assert "read_file" in [d["name"] for t in first["tools"] for d in t.get("functionDeclarations", [])]
    sent = recorder.requests[1]["contents"]
    assert [p.get("functionCall") for p in sent[-2]["parts"] if "functionCall" in p][0]["id"] == call["id"]
    (response,) = [p["functionResponse"] for p in sent[-1]["parts"] if "functionResponse" in p]
    assert response["name"] == "read_file" and response["id"] == call["id"]
    assert "print('hello from main')" in json.dumps(response["response"])
