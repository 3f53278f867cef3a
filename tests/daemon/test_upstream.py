"""specd in front of an upstream server (`upstream` in settings): the daemon's app in process, its model work sent to
a fake OpenAI-compatible server (fake_upstream.py) that records what it receives. The prompt it gets, specd's stops
and modes on its text, cancels that close its connection, each door's error when it fails, recovery when it comes
back, and the accounting read from its answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from pathlib import Path
from dataclasses import dataclass, replace

import aiohttp
import pytest

from specd.daemon.api.sigv4 import KeyPair
from specd.daemon.config.settings import Settings
from specd.daemon.engine.fim import build_fim_ids, detect_template
from specd.daemon.engine.loop import EngineConfig
from specd.daemon.engine.requests import CancelToken
from specd.daemon.models.upstream import load_upstream_engine
from specd.daemon.service.metrics import Metrics
from specd.daemon.service.scheduler import Scheduler

from .conftest import serve_app
from .fake_upstream import FakeUpstream, serve_fake_upstream

TOKEN = "upstream-test-token-0123"
KEYS = KeyPair("SPECDUPSTREAMKEY0000", "secret")
PREFIX = "import os\n\ndef add(a, b):\n"
SUFFIX = "\n\nprint(add(1, 2))\n"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tests.fixtures.tiny_models import build_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(folder)  # byte-level BPE with StarCoder's FIM tokens
    return folder


@dataclass
class Daemon:
    url: str
    scheduler: Scheduler
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def post(self, path: str, body: dict, **kw) -> tuple[int, dict]:
        async with aiohttp.ClientSession(headers=self.auth) as s, s.post(self.url + path, json=body, **kw) as r:
            return r.status, await r.json(content_type=None)

    async def scheduler_engine_check(self) -> None:
        """Ask the upstream again now, as `specd status` does."""
        await asyncio.wrap_future(self.scheduler.engine.check_upstream())

    async def status(self) -> dict:
        async with aiohttp.ClientSession(headers=self.auth) as s, s.get(self.url + "/specd/v1/status") as r:
            return await r.json()


@contextlib.asynccontextmanager
async def daemon_for(url: str, tokenizer_dir, **upstream):
    config = {"url": url, "key": "upstream-key", "model": "fake-coder", "tokenizer": str(tokenizer_dir), **upstream}
    settings = replace(Settings(verifier="smollm2-135m"), request_timeout=20, upstream=config)
    scheduler = Scheduler(lambda progress: load_upstream_engine(config, EngineConfig(max_context=1024), progress),
                          CancelToken, Metrics(), queue_size=8, request_timeout=20, keep_alive=-1)
    async with serve_app(settings, scheduler, token=TOKEN, aws_keys=KEYS) as daemon_url:
        assert scheduler.state == "ready", scheduler.load_error
        yield Daemon(daemon_url, scheduler)


@contextlib.asynccontextmanager
async def upstream_and_daemon(tokenizer_dir, fake: FakeUpstream | None = None, **upstream):
    async with serve_fake_upstream(fake) as fake, daemon_for(fake.url, tokenizer_dir, **upstream) as daemon:
        yield fake, daemon


def native(mode: str | None = "block", **extra) -> dict:
    return {"prefix": PREFIX, "suffix": SUFFIX, "mode": mode, "max_tokens": 40, "document_id": "file:///a.py",
            **extra}


# ---- what the upstream receives ---------------------------------------------------------------------------------

async def test_the_upstream_receives_specds_raw_fim_prompt_and_never_suffix(tokenizer_dir):
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native())
    assert status == 200, answer
    body = fake.requests[0]
    # StarCoder's markers (the tokenizer's); the cursor's line ("" here) and the one before it after the middle marker
    assert body["prompt"] == "<fim_prefix>import os\n\n<fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>def add(a, b):\n"
    assert "suffix" not in body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["model"] == "fake-coder" and body["max_tokens"] == 40 and body["temperature"] == 0.0
    assert "return_spec_tokens_details" not in body  # only for SGLang, which the fake is not
    assert fake.headers[0]["Authorization"] == "Bearer upstream-key"


async def test_the_cursor_line_goes_after_the_middle_marker(tokenizer_dir):
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        await daemon.post("/specd/v1/complete", {"prefix": "def f(x):\n    y = x.", "suffix": "\n    return y\n"})
    assert fake.requests[0]["prompt"] == "<fim_prefix>def f(x):\n<fim_suffix>\n    return y\n<fim_middle>    y = x."


async def test_prompt_format_tokens_sends_specds_token_ids(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    async with upstream_and_daemon(tokenizer_dir, prompt_format="tokens") as (fake, daemon):
        await daemon.post("/specd/v1/complete", native())
    assert fake.requests[0]["prompt"] == build_fim_ids(tokenizer, detect_template(tokenizer), PREFIX, SUFFIX)


@pytest.mark.parametrize("start", ["", "<|endoftext|>"])
async def test_a_ready_prompt_on_v1_completions_is_sent_as_written(tokenizer_dir, start):
    """Also one that starts with the tokenizer's BOS text, when the tokenizer does not add that token itself (as
    SmolLM2's `<|im_start|>`, which its chat template writes): the upstream would not add it back."""
    prompt = start + "<fim_prefix>x = 1\n<fim_suffix>\n<fim_middle>"
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        status, answer = await daemon.post("/v1/completions", {"model": "specd", "prompt": prompt, "max_tokens": 9,
                                                               "stop": ["\n\n"], "seed": 7, "temperature": 0.5})
    assert status == 200, answer
    assert fake.requests[0]["prompt"] == prompt and fake.requests[0]["seed"] == 7
    assert fake.requests[0]["temperature"] == 0.5
    assert answer["choices"][0]["text"] == "    return a + b"  # cut by specd at the stop string


# ---- specd's stops and modes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,stop,text", [
    ("block", [], "    return a + b\n"),  # the top-level `def other` after a blank line ends the block
    ("line", [], "    return a + b"),
    (None, ["+"], "    return a "),
    (None, [], "    return a + b\n\ndef other():\n    pass\n"),  # the upstream's own end
])
async def test_stops_and_modes_are_applied_by_specd(tokenizer_dir, mode, stop, text):
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native(mode=mode, stop=stop))
    assert status == 200, answer
    assert answer["text"] == text and answer["finish_reason"] == "stop"
    assert "stop" not in fake.requests[0]  # specd applies them, and knows which one cut (Anthropic's stop_sequence)


async def test_a_stop_closes_the_upstream_stream_at_once(tokenizer_dir):
    fake = FakeUpstream(delay=0.3)
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native(mode="line"))
        await asyncio.wait_for(fake.client_gone.wait(), 5)
    assert answer["text"] == "    return a + b"
    assert fake.closed == [0] and fake.finished == []


async def test_the_upstreams_length_finish_is_specds(tokenizer_dir):
    fake = FakeUpstream(pieces=["abc"], finish_reason="length")
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native(mode=None))
    assert (answer["text"], answer["finish_reason"]) == ("abc", "length")


async def test_streamed_text_is_the_whole_text(tokenizer_dir):
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        async with aiohttp.ClientSession(headers=daemon.auth) as s:
            async with s.post(daemon.url + "/v1/completions", json={"model": "specd", "prompt": "x", "stream": True,
                                                                    "specd": {"mode": "block"}}) as r:
                raw = (await r.read()).decode()
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: {")]
    import json
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events if json.loads(e)["choices"])
    assert text == "    return a + b\n"


# ---- cancellation closes the upstream connection ----------------------------------------------------------------

async def test_a_newer_request_for_the_document_closes_the_older_upstream_stream(tokenizer_dir):
    fake = FakeUpstream(delay=0.4)
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        older = asyncio.ensure_future(daemon.post("/specd/v1/complete", native(mode=None)))
        while not fake.requests:
            await asyncio.sleep(0.02)
        fake.delay = 0  # the older stream would end at once if it were still read
        status, newer = await daemon.post("/specd/v1/complete", native(mode=None))
        _, cancelled = await older
        await asyncio.wait_for(fake.client_gone.wait(), 2)
        assert fake.closed == [0] and fake.finished == [1]
    assert cancelled["finish_reason"] == "cancelled" and newer["finish_reason"] == "stop"


async def test_a_client_that_hangs_up_closes_the_upstream_stream(tokenizer_dir):
    fake = FakeUpstream(delay=0.3)
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        async with aiohttp.ClientSession(headers=daemon.auth) as s:
            response = await s.post(daemon.url + "/specd/v1/complete", json={**native(mode=None), "stream": True})
            await response.content.readline()  # the first event: the upstream is streaming
            response.close()
        await asyncio.wait_for(fake.client_gone.wait(), 5)
        await asyncio.sleep(0.1)
        assert daemon.scheduler.idle
    assert fake.closed == [0] and fake.finished == []


# ---- errors, in each door's shape -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DOORS = [
    ("/specd/v1/complete", native(mode=None), lambda b: b["error"]["message"]),
    ("/v1/completions", {"model": "specd", "prompt": "x"}, lambda b: b["error"]["message"]),
    ("/v1/chat/completions", {"model": "specd", "messages": [{"role": "user", "content": "hi"}]},
     lambda b: b["error"]["message"]),
    ("/v1/messages", {"model": "specd", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
     lambda b: b["type"] == "error" and b["error"]["message"]),
    ("/v1beta/models/specd:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]},
     lambda b: b["error"]["message"]),
]


async def door_errors(daemon: Daemon) -> list[tuple[int, str]]:
    out = []
    for path, body, message in DOORS:
        status, answer = await daemon.post(path, body, headers={"anthropic-version": "2023-06-01"}
                                           if path == "/v1/messages" else None)
        out.append((status, message(answer)))
    return out


async def bedrock_error(daemon: Daemon):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = boto3.client("bedrock-runtime", region_name="us-west-2", endpoint_url=daemon.url,
                          config=Config(retries={"total_max_attempts": 1}),
                          aws_access_key_id=KEYS.access_key_id, aws_secret_access_key=KEYS.secret_access_key)

    def call():
        with pytest.raises(ClientError) as raised:
            client.converse(modelId="specd", messages=[{"role": "user", "content": [{"text": "hi"}]}])
        return raised.value.response

    return await asyncio.get_running_loop().run_in_executor(None, call)


@pytest.mark.parametrize("behaviour,status,says", [
    ("status", 503, "answered HTTP 500: the model fell over"),
    ("html", 503, "answered text/html; charset=utf-8 instead of an event stream"),
    ("slow", 504, "sent nothing for 0.5 s"),
    ("drop", 503, "closed the connection mid-answer"),
    ("stall", 504, "sent nothing for 0.5 s"),
])
async def test_a_failing_upstream_is_a_clear_error_in_each_doors_shape(tokenizer_dir, behaviour, status, says):
    fake = FakeUpstream(behaviour=behaviour)
    async with upstream_and_daemon(tokenizer_dir, fake, timeout=0.5) as (fake, daemon):
        errors = await door_errors(daemon)
        bedrock = await bedrock_error(daemon)
    expected = f"the upstream {fake.url} {says}"
    assert [s for s, _ in errors] == [status] * len(DOORS)
    assert all(expected in m for _, m in errors), errors
    assert bedrock["ResponseMetadata"]["HTTPStatusCode"] == (408 if status == 504 else 503)
    assert bedrock["Error"]["Code"] == ("ModelTimeoutException" if status == 504 else "ServiceUnavailableException")
    assert expected in bedrock["Error"]["Message"]


async def test_an_error_after_the_stream_began_is_sent_in_band(tokenizer_dir):
    fake = FakeUpstream(behaviour="drop")
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        async with aiohttp.ClientSession(headers=daemon.auth) as s:
            async with s.post(daemon.url + "/v1/completions", json={"model": "specd", "prompt": "x", "stream": True}) as r:
                status, raw = r.status, (await r.read()).decode()
    assert status == 200
    assert f'"message": "the upstream {fake.url} closed the connection mid-answer' in raw


async def test_an_upstream_that_refuses_the_request_is_a_400(tokenizer_dir):
    fake = FakeUpstream(behaviour="status", status=400)
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/v1/completions", {"model": "specd", "prompt": "x"})
    assert status == 400 and "answered HTTP 400: the model fell over" in answer["error"]["message"]


async def test_specd_recovers_when_the_upstream_comes_back(tokenizer_dir):
    port = free_port()
    async with daemon_for(f"http://127.0.0.1:{port}", tokenizer_dir, timeout=2) as daemon:
        status, answer = await daemon.post("/specd/v1/complete", native())
        assert status == 503
        assert f"the upstream http://127.0.0.1:{port} cannot be reached" in answer["error"]["message"]
        report = await daemon.status()
        assert report["upstream"]["answering"] is False and "cannot be reached" in report["upstream"]["error"]
        async with serve_fake_upstream(port=port) as fake:
            status, answer = await daemon.post("/specd/v1/complete", native())
            assert (status, answer["text"]) == (200, "    return a + b\n")
            report = await daemon.status()
            assert report["upstream"]["answering"] is True and report["upstream"]["error"] is None
            assert report["upstream"]["models"] == ["fake-coder"] and report["upstream"]["server"] == "llamacpp"
        status, answer = await daemon.post("/specd/v1/complete", native())  # gone again, with its pooled connection
        assert status == 503
        async with serve_fake_upstream(port=port) as fake:  # and back
            status, answer = await daemon.post("/specd/v1/complete", native())
            assert status == 200, answer


# ---- accounting -------------------------------------------------------------------------------------------------

async def test_accounting_comes_from_the_upstreams_usage_and_llama_server_timings(tokenizer_dir):
    fake = FakeUpstream(usage={"prompt_tokens": 41, "completion_tokens": 7, "total_tokens": 48,
                               "prompt_tokens_details": {"cached_tokens": 32}},
                        timings={"cache_n": 32, "prompt_n": 9, "draft_n": 12, "draft_n_accepted": 9})
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native(mode=None))
        async with aiohttp.ClientSession(headers=daemon.auth) as s, s.get(daemon.url + "/metrics") as metrics:
            text = await metrics.text()
    stats = answer["specd"]
    assert (stats["prompt_tokens"], stats["cached_tokens"], stats["completion_tokens"]) == (41, 32, 7)
    assert (stats["drafted_tokens"], stats["accepted_tokens"]) == (12, 9)
    assert answer["usage"] == {"prompt_tokens": 41, "completion_tokens": 7, "total_tokens": 48}
    assert "specd_accepted_tokens_total 9" in text.replace(".0", "")


async def test_accounting_from_sglang_spec_tokens_details(tokenizer_dir):
    fake = FakeUpstream(models=[{"id": "fake-coder", "owned_by": "sglang"}],
                        sglext={"spec_tokens_details": {"spec_num_proposed_drafts": 20, "spec_num_correct_drafts": 15,
                                                        "spec_verify_ct": 6, "spec_accept_length": 2.5}})
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native(mode=None))
    assert fake.requests[0]["return_spec_tokens_details"] is True
    stats = answer["specd"]
    assert (stats["drafted_tokens"], stats["accepted_tokens"], stats["verifier_passes"]) == (20, 15, 6)


async def test_without_usage_specd_counts_with_the_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):  # llama-cpp-python's server sends no usage
        status, answer = await daemon.post("/specd/v1/complete", native(mode=None))
    prompt = build_fim_ids(tokenizer, detect_template(tokenizer), PREFIX, SUFFIX)
    completion = tokenizer("".join(FakeUpstream().pieces), add_special_tokens=False)["input_ids"]
    assert answer["specd"]["prompt_tokens"] == len(prompt)
    assert answer["specd"]["completion_tokens"] == len(completion)


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_the_wire_has_a_schema_field_for_every_server_the_engine_sends_schemas_to():
    from specd.daemon.engine.upstream_call import TOKEN_AND_SCHEMA_SERVERS
    from specd.daemon.models.upstream_wire import SCHEMA_FIELDS

    assert set(SCHEMA_FIELDS) == set(TOKEN_AND_SCHEMA_SERVERS)


@pytest.mark.parametrize("server, field", [
    ("vllm", lambda schema: {"structured_outputs": {"json": schema}}),
    ("sglang", lambda schema: {"json_schema": json.dumps(schema)}),
    ("llamacpp", lambda schema: {"json_schema": schema}),
])
async def test_a_json_schema_goes_in_the_servers_own_field_and_a_forced_call_comes_back_as_a_call(
        tokenizer_dir, server, field):
    fake = FakeUpstream(pieces=['{"name": "get_weather", ', '"arguments": {"city": "Oslo"}}'],
                        models=[{"id": "fake-coder", "object": "model", "owned_by": server}])
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/v1/chat/completions", {
            "model": "specd", "messages": [{"role": "user", "content": "Weather in Oslo?"}], "max_tokens": 50,
            "tools": [WEATHER_TOOL], "tool_choice": "required"})
        assert status == 200, answer
        (call,) = answer["choices"][0]["message"]["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
        assert answer["choices"][0]["finish_reason"] == "tool_calls" and answer["specd"]["json_complete"] is True
        sent = fake.requests[-1]
        schema = sent.get("structured_outputs", {}).get("json") if server == "vllm" else sent["json_schema"]
        schema = json.loads(schema) if isinstance(schema, str) else schema
        assert schema["properties"]["name"] == {"const": "get_weather"}
        assert {k: sent[k] for k in field(schema)} == field(schema)
        others = {"vllm": ("json_schema",), "sglang": ("structured_outputs",), "llamacpp": ("structured_outputs",)}
        assert not set(others[server]) & set(sent)
        fake.pieces = ["[1, 2"]  # cut short: not a whole document
        status, answer = await daemon.post("/v1/chat/completions", {
            "model": "specd", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
            "response_format": {"type": "json_object"}})
        assert status == 200 and answer["specd"]["json_complete"] is False
        assert {k: fake.requests[-1][k] for k in field({"type": "object"})} == field({"type": "object"})


async def test_an_upstream_that_had_not_named_itself_is_asked_again_for_a_schema(tokenizer_dir):
    fake = FakeUpstream(pieces=["{}"], models=[{"id": "fake-coder", "object": "model"}])  # no owned_by at load
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        fake.models = [{"id": "fake-coder", "object": "model", "owned_by": "vllm"}]
        status, answer = await daemon.post("/v1/chat/completions", {
            "model": "specd", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}})
    assert status == 200 and fake.requests[-1]["structured_outputs"] == {"json": {"type": "object"}}, answer


async def test_a_json_schema_is_refused_for_an_upstream_that_cannot_constrain_its_output(tokenizer_dir):
    fake = FakeUpstream(models=[{"id": "fake-coder", "object": "model", "owned_by": "me"}])  # llama-cpp-python's
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/v1/chat/completions", {
            "model": "specd", "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"}})
    assert status == 400 and fake.requests == []
    assert "a JSON schema needs an upstream that reads it: vLLM, SGLang or llama-server" in answer["error"]["message"]
    assert "says it is 'me' (llama-cpp-python's server, which reads text prompts and GBNF grammars only)" \
        in answer["error"]["message"]
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):  # counting tokens generates nothing
        status, answer = await daemon.post("/v1/messages/count_tokens", {
            "model": "specd", "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "any"},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}]})
    assert status == 200 and answer["input_tokens"] > 0 and fake.requests == []


@pytest.mark.parametrize("server, field", [
    ("vllm", {"structured_outputs": {"choice": ["good", "not (so) good"]}}),
    ("sglang", {"regex": "(good|not \\(so\\) good)"}),
    ("llamacpp", {"grammar": 'root ::= "good" | "not (so) good"'}),
])
async def test_text_choices_go_in_the_servers_own_field(tokenizer_dir, server, field):
    fake = FakeUpstream(pieces=["not (so) ", "good"], models=[{"id": "fake-coder", "object": "model",
                                                               "owned_by": server}])
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/v1beta/models/specd:generateContent", {
            "contents": [{"parts": [{"text": "How does it feel?"}]}],
            "generationConfig": {"responseMimeType": "text/x.enum",
                                 "responseSchema": {"type": "STRING", "enum": ["good", "not (so) good"]}}})
    assert status == 200, answer
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "not (so) good"}]
    assert answer["specd"]["json_complete"] is True
    assert {k: fake.requests[-1][k] for k in field} == field


def test_text_choices_as_regular_expressions_and_gbnf_literals_match_the_text_itself():
    import re

    from specd.daemon.models.upstream_wire import CHOICE_FIELDS

    odd = ('a.b (c)', 'x\\y+', 'say "hi"\n', "ü 😀")
    regex = CHOICE_FIELDS["sglang"](odd)["regex"]
    assert all(re.fullmatch(regex, text) for text in odd) and not re.fullmatch(regex, "aXb (c)")
    grammar = CHOICE_FIELDS["llamacpp"](odd)["grammar"]
    assert grammar == 'root ::= "a.b (c)" | "x\\\\y+" | "say \\"hi\\"\\n" | "\\u00fc \\U0001f600"'


async def test_token_prompts_for_a_server_that_reads_text_only_are_a_400_that_says_what_to_set(tokenizer_dir):
    fake = FakeUpstream(models=[{"id": "fake-coder", "object": "model", "owned_by": "me"}])
    async with upstream_and_daemon(tokenizer_dir, fake, prompt_format="tokens") as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native())
    assert status == 400 and fake.requests == []
    assert 'prompt_format "tokens" needs an upstream that reads it' in answer["error"]["message"]
    assert 'set prompt_format to "text"' in answer["error"]["message"]


async def test_an_upstream_that_is_specd_itself_is_refused_at_once(tokenizer_dir):
    fake = FakeUpstream(models=[{"id": "smollm2-135m", "object": "model", "owned_by": "specd"}])
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        status, answer = await daemon.post("/specd/v1/complete", native())
    assert status == 503 and fake.requests == []
    assert "is a specd daemon" in answer["error"]["message"]


async def test_the_served_name_is_the_upstreams_model_learnt_once_it_answers(tokenizer_dir):
    fake = FakeUpstream(models=[])  # lists nothing at load, as a server still loading its model
    async with upstream_and_daemon(tokenizer_dir, fake, model=None) as (fake, daemon):
        fake.models = [{"id": "Qwen/Qwen2.5-Coder-7B", "object": "model", "owned_by": "vllm"}]
        await daemon.scheduler_engine_check()
        async with aiohttp.ClientSession(headers=daemon.auth) as s, s.get(daemon.url + "/v1/models") as r:
            listed = [m["id"] for m in (await r.json())["data"]]
        status, answer = await daemon.post("/v1/completions", {"model": "Qwen/Qwen2.5-Coder-7B", "prompt": "x = ",
                                                               "max_tokens": 4})
    assert listed == ["Qwen/Qwen2.5-Coder-7B"] and status == 200, answer
    assert fake.requests[-1]["model"] == "Qwen/Qwen2.5-Coder-7B" and answer["model"] == "Qwen/Qwen2.5-Coder-7B"


async def test_count_tokens_asks_the_upstream_nothing(tokenizer_dir):
    async with upstream_and_daemon(tokenizer_dir) as (fake, daemon):
        status, answer = await daemon.post("/v1/messages/count_tokens", {
            "model": "specd", "messages": [{"role": "user", "content": "hello there"}]})
    assert status == 200 and answer["input_tokens"] > 0 and fake.requests == []


async def test_status_shows_the_upstream_and_vllm_speculative_counters(tokenizer_dir):
    fake = FakeUpstream(models=[{"id": "fake-coder", "owned_by": "vllm", "max_model_len": 32768}], metrics_text=(
        "# TYPE vllm:spec_decode_num_draft_tokens_total counter\n"
        'vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="fake-coder"} 400.0\n'
        'vllm:spec_decode_num_draft_tokens_total{engine="1",model_name="fake-coder"} 100.0\n'
        'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="fake-coder"} 300.0\n'
        'vllm:spec_decode_num_drafts_total{engine="0",model_name="fake-coder"} 125.0\n'))
    async with upstream_and_daemon(tokenizer_dir, fake) as (fake, daemon):
        report = await daemon.status()
    upstream = report["upstream"]
    assert (upstream["url"], upstream["server"], upstream["answering"]) == (fake.url, "vllm", True)
    assert upstream["max_model_len"] == 32768
    assert upstream["speculative"] == {"drafted_tokens": 500, "accepted_tokens": 300, "drafts": 125,
                                       "acceptance_rate": 0.6}
    assert report["models"]["backend"] == "upstream" and report["models"]["fim_template"] == "starcoder"
    assert "upstream-key" not in str(report)


def test_specd_status_prints_the_upstream():
    from specd.daemon.cli.main import _describe

    base = {"running": True, "version": "x", "url": "u", "pid": 1, "responding": True, "state": "ready",
            "token_file": "t", "log_file": "l"}
    up = {"url": "http://gpu:8000", "server": "vllm", "answering": True, "error": None, "models": ["m"]}
    assert "upstream: http://gpu:8000 (vllm): answers, serving m" in _describe({**base, "upstream": up})
    down = {**up, "answering": False, "error": "the upstream http://gpu:8000 cannot be reached: Connection refused"}
    assert "upstream: http://gpu:8000 (vllm): not answering: the upstream http://gpu:8000 cannot be reached" in \
        _describe({**base, "upstream": down})


# ---- the setting ------------------------------------------------------------------------------------------------

def test_the_upstream_setting_from_settings_json_env_and_flags(tmp_path):
    from specd.daemon.config.settings import SettingsError, load_settings

    file = tmp_path / "settings.json"
    file.write_text('{"upstream": {"url": "http://gpu:8000", "model": "Qwen/Qwen2.5-Coder-7B", "timeout": 5}}')
    assert load_settings(file, env={}).upstream == {"url": "http://gpu:8000", "model": "Qwen/Qwen2.5-Coder-7B",
                                                   "timeout": 5}
    assert load_settings(file, env={"SPECD_UPSTREAM": "http://other:9000"}).upstream == {"url": "http://other:9000"}
    assert load_settings(file, env={}, flags={"upstream": "none"}).upstream is None
    for bad, says in [('{"upstream": {"url": "gpu:8000"}}', "'url' must be an http(s) URL"),
                      ('{"upstream": {"url": "http://g", "suffix": true}}', "unknown field 'suffix'"),
                      ('{"upstream": {"url": "http://g", "prompt_format": "ids"}}', "'prompt_format' must be one of"),
                      ('{"upstream": "http://g"}', "expected null or an object")]:
        file.write_text(bad)
        with pytest.raises(SettingsError, match=re.escape(f"line 1: 'upstream': {says}")):
            load_settings(file, env={})


# ---- the wire format --------------------------------------------------------------------------------------------

def test_stream_events_as_each_server_sends_them():
    from specd.daemon.models.upstream_wire import WireError, read_event

    assert read_event(b"\n") is None and read_event(b": ping - 2026-11-30\n") is None
    assert read_event(b"event: message\n") is None and read_event(b"data: [DONE]\n") == "done"
    # vLLM with include_usage: a last event with no choices and the usage
    last = read_event(b'data: {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, '
                      b'"prompt_tokens_details": {"cached_tokens": 8}}}')
    assert (last.text, last.prompt_tokens, last.completion_tokens, last.cached_tokens) == ("", 12, 3, 8)
    # llama-server: timings in the last event; cache_n when usage has no cached count
    last = read_event(b'data: {"choices": [{"text": "", "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, '
                      b'"completion_tokens": 2}, "timings": {"cache_n": 4, "draft_n": 6, "draft_n_accepted": 5}}')
    assert (last.finish_reason, last.cached_tokens, last.drafted_tokens, last.accepted_tokens) == ("stop", 4, 6, 5)
    for line, says in [(b"data: <html>", "not JSON"), (b"data: [1]", "not a JSON object"),
                       (b'data: {"object": "x"}', "without 'choices'"),
                       (b'data: {"error": {"message": "CUDA out of memory"}}', "CUDA out of memory")]:
        with pytest.raises(WireError, match=re.escape(says)):
            read_event(line)


def test_an_upstream_key_given_as_a_flag_stays_off_the_daemons_command_line(tmp_path, tokenizer_dir):
    """`ps` shows every local user a process's command line: `specd start` hands the key over in the environment
    (which only the user reads), and the daemon still uses it, records it for `specd restart` and prints it as a
    fingerprint."""
    from specd.daemon.config.settings import settings_record

    from .conftest import run_cli, specd_env

    with socket.socket() as unused:  # nothing listens there: the daemon starts all the same ("not answering yet")
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    flag = json.dumps({"url": url, "key": "sekrit-key-42", "tokenizer": str(tokenizer_dir), "model": "m"})
    env = specd_env(tmp_path)
    fingerprint = settings_record(Settings(upstream={"url": url, "key": "sekrit-key-42"}))["upstream"]["key"]
    try:
        for command in (["start", "--port", "0", "--upstream", flag], ["restart"]):  # restart: the start's flags
            done = run_cli(env, *command)
            assert done.returncode == 0, done.stderr
            state = json.loads((tmp_path / "state" / "daemon.json").read_text())
            command_line = (Path("/proc") / str(state["pid"]) / "cmdline").read_bytes()
            assert b"sekrit" not in command_line and b"--upstream" in command_line
            assert state["settings"]["upstream"]["key"] == fingerprint  # the daemon got the key
            assert json.loads(state["flags"][state["flags"].index("--upstream") + 1])["key"] == "sekrit-key-42"
        shown = run_cli(env, "status", "--json").stdout
        assert "sekrit" not in shown and fingerprint in shown
    finally:
        run_cli(env, "stop")
