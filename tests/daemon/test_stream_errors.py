"""A streamed request that fails before its first token (a prompt beyond the context window, the models failed to
load, the deadline) is answered with the HTTP error status in the door's own error body, as without `stream`, so
the official SDKs raise their status errors (openai/anthropic BadRequestError 400, not an APIError after a 200).
Errors after the first token stay in-band (a deadline then ends the stream as cut, with the text so far); the
stream still opens as soon as the first token exists, with the door's opening events (Anthropic's message_start +
ping) first; a client leaving before it cancels the job.

A real tiny engine gives the real "prompt is too long" refusal through every door's stream; the fake engine drives
the other failures step by step."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.error
import urllib.request

import aiohttp
import anthropic
import openai
import pytest

from specd.daemon.api.sigv4 import KeyPair
from specd.daemon.engine.requests import GenerationResult, PromptTooLong, Stats

from .conftest import fake_daemon
from .fake_engine import FakeEngine
from .served_engine import TOKEN, serve
from .test_scheduler import until, wait_event

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

KEYS = KeyPair("SPECDTESTKEY00000000", "secret")
NO_RETRY = Config(retries={"total_max_attempts": 1})
TOO_LONG = str(PromptTooLong(9999, 64))  # "prompt is too long: 9999 tokens > 64 maximum; ..."
PREFILLING = threading.Event()  # set while the patched engine sits in a "slow" prompt's prefill


def deadline_message(seconds: str) -> str:
    return (f"the request did not finish within request_timeout ({seconds}s) and had generated no text yet; raise "
            "request_timeout (settings.json, SPECD_REQUEST_TIMEOUT or `specd restart --request-timeout SECONDS`)")


def streamed(text: str) -> dict[str, tuple[str, dict]]:
    """door route -> (path, a streamed request whose prompt contains `text`) for every door's streaming route."""
    user = [{"role": "user", "content": text}]
    return {
        "openai completions": ("/v1/completions", {"prompt": text, "max_tokens": 4, "stream": True}),
        "openai chat": ("/v1/chat/completions", {"messages": user, "max_tokens": 4, "stream": True}),
        "anthropic": ("/v1/messages", {"model": "specd", "max_tokens": 4, "messages": user, "stream": True}),
        "gemini": ("/v1beta/models/specd:streamGenerateContent?alt=sse",
                   {"contents": [{"parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 4}}),
        "bedrock converse": ("/model/specd/converse-stream",
                             {"messages": [{"role": "user", "content": [{"text": text}]}],
                              "inferenceConfig": {"maxTokens": 4}}),
        "bedrock invoke": ("/model/specd/invoke-with-response-stream", {"prompt": text, "max_tokens": 4}),
        "native": ("/specd/v1/complete", {"prefix": text, "max_tokens": 4, "stream": True}),
    }


def door_error(route: str, status: int, message: str, kind: str, code: str | None = None
               ) -> tuple[int, dict, str | None]:
    """(status, body without request_id, x-amzn-ErrorType) each door answers for one of specd's errors;
    `kind` is specd's generic error type, `code` the OpenAI shape's code (the status when None)."""
    if route == "anthropic":
        kinds = {400: "invalid_request_error", 503: "api_error", 504: "timeout_error"}
        return status, {"type": "error", "error": {"type": kinds[status], "message": message}}, None
    if route == "gemini":
        names = {400: "INVALID_ARGUMENT", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
        return status, {"error": {"code": status, "message": message, "status": names[status]}}, None
    if route.startswith("bedrock"):
        aws = {400: (400, "ValidationException"), 503: (503, "ServiceUnavailableException"),
               504: (408, "ModelTimeoutException")}
        return aws[status][0], {"message": message}, aws[status][1]
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code or status}}, None


async def post(url: str, path: str, body: dict, token: str) -> tuple[int, str, bytes, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s, \
            s.post(url + path, json=body) as response:
        return response.status, response.content_type, await response.read(), dict(response.headers)


async def check_every_door(url: str, token: str, text: str, status: int, message, kind: str,
                           skip: tuple[str, ...] = (), code: str | None = None) -> None:
    """Every door's stream (but `skip`) for a prompt containing `text` is refused with `status` before any event:
    JSON, the door's error body; `message`: the exact message, or a pattern it must match."""
    for route, (path, body) in streamed(text).items():
        if route in skip:
            continue
        got, content_type, raw, headers = await post(url, path, body, token)
        answer = json.loads(raw)
        request_id = answer.pop("request_id", None)
        got_message = (answer.get("error") or answer)["message"]
        if isinstance(message, re.Pattern):
            assert message.fullmatch(got_message), (route, got_message)
            want_message = got_message
        else:
            want_message = message
        want_status, want_body, aws_error = door_error(route, status, want_message, kind, code)
        assert (got, content_type, answer) == (want_status, "application/json", want_body), route
        assert headers.get("x-amzn-ErrorType") == aws_error, route
        assert (request_id is not None) == (route == "anthropic"), route


@pytest.fixture(autouse=True)
def engine_failures(monkeypatch):
    """The fake engine refuses a prompt containing "too long" (chat prompts too) before writing anything, as the
    engine refuses one beyond the context window; a prompt containing "slow" sits in its prefill, writing
    nothing, until the request is cancelled."""
    generate = FakeEngine.generate
    PREFILLING.clear()

    def patched(self, request, cancel, on_text=None):
        if "too long" in request.prompt:
            raise PromptTooLong(9999, 64)
        if "slow" in request.prompt:
            PREFILLING.set()
            while not cancel.cancelled:
                time.sleep(0.005)
            self.finished.append("cancelled")
            return GenerationResult("", [], "cancelled", Stats())
        return generate(self, request, cancel, on_text)

    monkeypatch.setattr(FakeEngine, "generate", patched)


# ---- errors before the first token: an HTTP status ------------------------------------------------------------

async def test_a_prompt_beyond_the_context_is_a_400_on_every_doors_stream():
    async with fake_daemon() as d:
        await check_every_door(d.url, d.token, "too long", 400, TOO_LONG, "invalid_request_error",
                               code="context_length_exceeded")
        assert d.engine.requests == []  # refused by the engine, nothing generated


async def test_models_that_failed_to_load_are_a_503_on_every_doors_stream():
    async with fake_daemon(load_error=ValueError("no model named 'nope'")) as d:
        await until(lambda: d.scheduler.state == "failed")
        await check_every_door(d.url, d.token, "x", 503, "the models failed to load: ValueError: no model named 'nope'",
                               "unavailable")


async def test_a_deadline_before_the_first_token_is_a_504_on_every_doors_stream():
    async with fake_daemon(request_timeout=0.1) as d:
        await check_every_door(d.url, d.token, "slow", 504, deadline_message("0.1"), "timeout")
        assert d.engine.finished == ["cancelled"] * len(streamed(""))


async def test_the_openai_and_anthropic_sdks_raise_bad_request_for_a_streamed_prompt_that_is_too_long():
    async with fake_daemon() as d:
        async with openai.AsyncOpenAI(base_url=d.url + "/v1", api_key=d.token, max_retries=0) as sdk:
            with pytest.raises(openai.BadRequestError) as completion:
                await sdk.completions.create(model="specd", prompt="too long", max_tokens=4, stream=True)
            with pytest.raises(openai.BadRequestError) as chat:
                await sdk.chat.completions.create(model="specd", messages=[{"role": "user", "content": "too long"}],
                                                  stream=True)
        for raised in (completion, chat):
            assert raised.value.status_code == 400
            assert raised.value.body == {"message": TOO_LONG, "type": "invalid_request_error", "param": None,
                                         "code": "context_length_exceeded"}
        async with anthropic.AsyncAnthropic(base_url=d.url, api_key=d.token, max_retries=0) as sdk:
            with pytest.raises(anthropic.BadRequestError) as created:
                await sdk.messages.create(model="specd", max_tokens=4, stream=True,
                                          messages=[{"role": "user", "content": "too long"}])
            with pytest.raises(anthropic.BadRequestError) as helper:
                async with sdk.messages.stream(model="specd", max_tokens=4,
                                               messages=[{"role": "user", "content": "too long"}]) as stream:
                    await stream.get_final_message()
        for raised in (created, helper):
            assert raised.value.status_code == 400
            assert raised.value.body["error"] == {"type": "invalid_request_error", "message": TOO_LONG}


async def test_boto3_raises_a_validation_exception_at_the_call_not_an_event_stream_error():
    async with fake_daemon(aws_keys=KEYS) as d:
        def call() -> ClientError:
            sdk = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=d.url, config=NO_RETRY,
                               aws_access_key_id=KEYS.access_key_id, aws_secret_access_key=KEYS.secret_access_key)
            with pytest.raises(ClientError) as raised:
                sdk.converse_stream(modelId="specd", messages=[{"role": "user", "content": [{"text": "too long"}]}])
            return raised.value

        error = await asyncio.get_running_loop().run_in_executor(None, call)
        assert not isinstance(error, EventStreamError)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error.response["Error"] == {"Code": "ValidationException", "Message": TOO_LONG}


async def test_a_client_that_leaves_before_the_first_token_cancels_the_job():
    async with fake_daemon(request_timeout=60) as d, aiohttp.ClientSession(headers=d.auth) as s:
        path, body = streamed("slow")["anthropic"]
        request = asyncio.ensure_future(s.post(d.url + path, json=body))
        await wait_event(PREFILLING)
        request.cancel()  # the client goes away while nothing has been sent
        await until(lambda: d.engine.finished)
        assert d.engine.finished == ["cancelled"]
        await until(lambda: d.scheduler.idle)
        async with s.post(d.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as response:
            assert response.status == 200  # still serving


# ---- the stream once the first token exists -------------------------------------------------------------------

async def test_the_first_events_arrive_while_the_engine_is_still_generating():
    """Headers, the door's opening events and the first piece go out as soon as the piece exists."""
    async with fake_daemon(hold=True) as d, aiohttp.ClientSession(headers=d.auth) as s:
        path, body = streamed("x")["anthropic"]
        response = await s.post(d.url + path, json=body)
        assert (response.status, response.content_type) == (200, "text/event-stream")
        seen = b""
        while b"content_block_delta" not in seen:
            seen += await asyncio.wait_for(response.content.readany(), 60)  # a bound against hanging
        assert d.engine.finished == []  # the engine holds after its first piece
        events = [line[7:] for line in seen.decode().splitlines() if line.startswith("event: ")]
        assert events == ["message_start", "ping", "content_block_start", "content_block_delta"]
        assert json.loads(seen.decode().split("data: ")[-1])["delta"] == {"type": "text_delta", "text": "t0 "}
        d.engine.release.set()
        rest = (await response.read()).decode()
        assert rest.endswith("event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n")
        response.close()


async def test_a_deadline_after_the_first_token_ends_each_doors_stream_as_cut():
    """The text so far is the answer, ended by each door's max-tokens reason; `specd.truncated` says why."""
    # the first piece comes at once, the engine then holds: the deadline falls after it (1 s: room for a slow CI)
    async with fake_daemon(hold=True, request_timeout=1, aws_keys=KEYS) as d:
        routes = streamed("x")
        status, _, raw, _ = await post(d.url, *routes["anthropic"], d.token)
        events = [(e.split("\n")[0], json.loads(e.split("data: ", 1)[1])) for e in raw.decode().strip().split("\n\n")]
        assert status == 200 and [name for name, _ in events] == [
            "event: message_start", "event: ping", "event: content_block_start", "event: content_block_delta",
            "event: content_block_stop", "event: message_delta", "event: message_stop"]
        assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
        assert events[-2][1]["specd"]["truncated"] == "deadline" and events[-2][1]["usage"]["output_tokens"] == 1

        status, _, raw, _ = await post(d.url, *routes["gemini"], d.token)
        chunks = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
        assert status == 200 and chunks[0]["candidates"][0]["content"]["parts"] == [{"text": "t0 "}]
        assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert chunks[-1]["specd"]["truncated"] == "deadline"

        def bedrock() -> list[dict]:
            sdk = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=d.url, config=NO_RETRY,
                               aws_access_key_id=KEYS.access_key_id, aws_secret_access_key=KEYS.secret_access_key)
            user = [{"role": "user", "content": [{"text": "x"}]}]
            converse = list(sdk.converse_stream(modelId="specd", messages=user)["stream"])
            # one after the other: a job queued behind a held one would meet its deadline first
            invoke = [json.loads(e["chunk"]["bytes"]) for e in
                      sdk.invoke_model_with_response_stream(modelId="specd", body=b'{"prompt": "x"}')["body"]]
            return [next(e["messageStop"] for e in converse if "messageStop" in e), invoke[-1]]

        stop, last = await asyncio.get_running_loop().run_in_executor(None, bedrock)
        assert stop["stopReason"] == "max_tokens"
        assert stop["additionalModelResponseFields"]["specd"]["truncated"] == "deadline"
        assert last["finish_reason"] == "length" and last["specd"]["truncated"] == "deadline"


# ---- a real tiny engine: the engine's own refusal --------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from specd.daemon.engine.loop import EngineConfig
    from specd.daemon.models.loading import load_engine
    from tests.fixtures.tiny_models import write_tiny_chat_model

    model = write_tiny_chat_model(tmp_path_factory.mktemp("chat-model") / "tiny-chat", max_positions=64)
    config = EngineConfig(verifier=str(model), draft_strategy="none", device="cpu", max_context=64)
    with serve(lambda: load_engine(config, progress=lambda m: None)) as served:
        yield served


LONG = "def f(x):\n    return x\n" * 60
REFUSED = re.compile(r"prompt is too long: \d+ tokens > 64 maximum; the context window is 64 tokens "
                     r"\(shorten the prompt, or raise max_context if the model allows\)")


def test_a_real_engines_refusal_reaches_the_sdks_as_bad_request(tiny_engine):
    with openai.OpenAI(base_url=tiny_engine.url + "/v1", api_key=TOKEN, max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            for _ in sdk.completions.create(model="specd", prompt=LONG, max_tokens=4, stream=True):
                pass
        assert raised.value.status_code == 400 and REFUSED.fullmatch(raised.value.body["message"])
    with anthropic.Anthropic(base_url=tiny_engine.url, api_key=TOKEN, max_retries=0) as sdk:
        with pytest.raises(anthropic.BadRequestError) as raised:
            with sdk.messages.stream(model="specd", max_tokens=4, messages=[{"role": "user", "content": LONG}]) as s:
                s.get_final_message()
        assert raised.value.status_code == 400 and REFUSED.fullmatch(raised.value.body["error"]["message"])


def test_a_real_engines_refusal_is_a_400_on_every_doors_stream(tiny_engine):
    # the native route fits a long prefix into the context (editors cannot count tokens) instead of refusing it
    asyncio.run(check_every_door(tiny_engine.url, TOKEN, LONG, 400, REFUSED, "invalid_request_error", skip=("native",),
                                 code="context_length_exceeded"))
    request = urllib.request.Request(tiny_engine.url + "/v1/completions", method="POST",  # and it keeps serving
                                     data=json.dumps({"prompt": "def f(", "max_tokens": 2, "stream": True}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200 and response.read().endswith(b"data: [DONE]\n\n")
    except urllib.error.HTTPError as e:  # pragma: no cover - shows the body on failure
        raise AssertionError(e.read()) from None
