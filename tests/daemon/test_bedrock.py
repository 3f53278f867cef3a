"""The Bedrock runtime door through AWS's own SDK (boto3, signing with SigV4) against the real daemon (`specd serve`,
tiny random-weight verifier + drafter); raw HTTP only for an unsigned request and a client that hangs up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request

import aiohttp
import openai
import pytest

from .conftest import run_cli, specd_env
from .door_checks import daemon, full_queue, hang_up_mid_stream, run_example  # noqa: F401 - daemon: the fixture

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

from specd.daemon.api.sigv4 import KeyPair  # noqa: E402

SYSTEM = "You complete Python code."
PROMPT = "def parse_args(argv):\n    parser = "
NO_RETRY = Config(retries={"total_max_attempts": 1})


def keys_of(daemon) -> KeyPair:
    saved = json.loads((daemon.home / "state" / "aws_keys.json").read_text())
    return KeyPair(saved["aws_access_key_id"], saved["aws_secret_access_key"])


def bedrock(url: str, keys: KeyPair, region: str = "us-west-2"):
    return boto3.client("bedrock-runtime", region_name=region, endpoint_url=url, config=NO_RETRY,
                        aws_access_key_id=keys.access_key_id, aws_secret_access_key=keys.secret_access_key)


@pytest.fixture
def sdk(daemon):
    return bedrock(daemon.url, keys_of(daemon))


@pytest.fixture(scope="module")
def model(daemon) -> str:
    with openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token) as client:
        return client.models.list().data[0].id


def converse_args(model: str, **config) -> dict:
    return {"modelId": model, "system": [{"text": SYSTEM}],
            "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
            "inferenceConfig": {"maxTokens": 24, "temperature": 0, **config}}


def test_converse_has_bedrock_fields_and_specd_accounting(sdk, model):
    answer = sdk.converse(**converse_args(model), additionalModelRequestFields={
        "speculativeDecoding": {"enabled": True, "maxDraftTokens": 3}})
    text = answer["output"]["message"]["content"][0]["text"]
    assert answer["output"]["message"]["role"] == "assistant" and text
    assert answer["stopReason"] == "max_tokens"  # 24 tokens, no EOS from this model
    usage, stats = answer["usage"], answer["additionalModelResponseFields"]["specd"]
    assert usage["outputTokens"] == stats["completion_tokens"] == 24
    assert usage["inputTokens"] + usage["cacheReadInputTokens"] == stats["prompt_tokens"]
    assert usage["cacheReadInputTokens"] == stats["cached_tokens"]
    assert usage["totalTokens"] == stats["prompt_tokens"] + 24
    assert stats["speculative"] == {"enabled": True, "max_draft_tokens": 3, "drafting_model": stats["speculative"]
                                    ["drafting_model"]} and stats["drafted_tokens"] > 0
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-specd-accepted-tokens"] == str(stats["accepted_tokens"])
    again = sdk.converse(**converse_args(model))
    assert again["usage"]["cacheReadInputTokens"] >= stats["prompt_tokens"] - 2  # the same prompt: from cache
    assert again["output"]["message"]["content"][0]["text"] == text


def test_converse_stream_joins_to_the_same_text_in_bedrocks_event_order(sdk, model):
    whole = sdk.converse(**converse_args(model))
    events = list(sdk.converse_stream(**converse_args(model))["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 24


def test_a_stop_sequence_is_reported_as_such(sdk, model):
    text = sdk.converse(**converse_args(model))["output"]["message"]["content"][0]["text"]
    stop = text[4:7]
    cut = sdk.converse(**converse_args(model, stopSequences=[stop]))
    assert cut["stopReason"] == "stop_sequence"
    assert cut["output"]["message"]["content"][0]["text"] == text[:text.index(stop)]


def test_invoke_model_and_its_stream_with_specds_body(sdk, model):
    body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0, "top_p": 0.95,
            "speculativeDecoding": {"enabled": True, "maxDraftTokens": 8}}
    answer = json.loads(sdk.invoke_model(modelId=model, body=json.dumps(body))["body"].read())
    assert answer["text"] and answer["finish_reason"] == "length"
    # token healing: a prompt cut after "= " writes the space again, free of max_tokens if that is all a token writes
    rewritten = answer["specd"]["rewritten_tokens"]
    assert answer["usage"]["completion_tokens"] == answer["specd"]["completion_tokens"] == 16 + rewritten
    assert answer["specd"]["speculative"]["max_draft_tokens"] == 8
    chunks = [json.loads(e["chunk"]["bytes"]) for e in
              sdk.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))["body"]]
    assert "".join(c["text"] for c in chunks) == answer["text"]
    assert chunks[-1]["finish_reason"] == "length"
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 16 + rewritten
    plain = json.loads(sdk.invoke_model(modelId=model, body=json.dumps(
        {**body, "speculativeDecoding": {"enabled": False}}))["body"].read())
    assert plain["text"] == answer["text"] and plain["specd"]["drafted_tokens"] == 0


def test_the_served_models_foundation_model_arn_names_it(sdk, model):
    arn = f"arn:aws:bedrock:us-west-2::foundation-model/{model}"
    assert sdk.converse(**converse_args(arn, maxTokens=2))["usage"]["outputTokens"] == 2
    with pytest.raises(ClientError) as raised:
        sdk.converse(**converse_args("arn:aws:bedrock:us-west-2::foundation-model/other-model", maxTokens=2))
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_an_invoke_body_of_another_models_format_is_refused_not_half_read(sdk, model):
    """Llama's `max_gen_len` was dropped: the default 4096 tokens applied and the answer ran to the deadline."""
    for stream in (False, True):
        call = sdk.invoke_model_with_response_stream if stream else sdk.invoke_model
        with pytest.raises(ClientError) as raised:
            call(modelId=model, body=json.dumps({"prompt": PROMPT, "max_gen_len": 4}))
        assert raised.value.response["Error"]["Code"] == "ValidationException"
        assert "specd's InvokeModel body has no field 'max_gen_len'" in raised.value.response["Error"]["Message"]


def post_converse(daemon, model: str, body: dict) -> tuple[int, str, dict]:
    """A raw Converse request with specd's token: a body botocore would refuse before sending it."""
    async def post() -> tuple[int, str, dict]:
        async with aiohttp.ClientSession() as s, s.post(f"{daemon.url}/model/{model}/converse", json=body,
                                                        headers=daemon.auth) as response:
            return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.json()
    return asyncio.run(post())


def test_stop_sequences_must_be_an_array_and_unserved_operations_answer_in_bedrocks_shape(daemon, sdk, model):
    args = converse_args(model, stopSequences="zH")
    status, kind, body = post_converse(daemon, args.pop("modelId"), args)
    assert (status, kind) == (400, "ValidationException")
    assert "'inferenceConfig.stopSequences' must be an array of strings" in body["message"]
    with pytest.raises(ClientError) as raised:  # botocore's bedrock-runtime has it; specd does not serve it
        sdk.apply_guardrail(guardrailIdentifier="g", guardrailVersion="1", source="INPUT",
                            content=[{"text": {"text": "x"}}])
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "/guardrail/g/version/1/apply" in raised.value.response["Error"]["Message"]


def test_count_tokens_counts_what_converse_reads(sdk, model):
    counted = sdk.count_tokens(modelId=model, input={"converse": {
        "system": [{"text": SYSTEM}], "messages": [{"role": "user", "content": [{"text": PROMPT}]}]}})
    usage = sdk.converse(**converse_args(model, maxTokens=1))["usage"]
    assert counted["inputTokens"] == usage["inputTokens"] + usage["cacheReadInputTokens"] > 10
    invoked = sdk.count_tokens(modelId=model, input={"invokeModel": {"body": json.dumps({"prompt": PROMPT})}})
    answer = json.loads(sdk.invoke_model(modelId=model, body=json.dumps({"prompt": PROMPT, "max_tokens": 1,
                                                                        "specd": {"token_healing": False}}))["body"].read())
    assert invoked["inputTokens"] == answer["usage"]["prompt_tokens"]
    beyond = sdk.count_tokens(modelId=model, input={"converse": {"messages": [
        {"role": "user", "content": [{"text": "value = compute(value)\n" * 2000}]}]}})
    assert beyond["inputTokens"] > 8192  # beyond any test context window, counted all the same


def test_a_final_assistant_message_is_a_prefill_converse_continues(daemon, sdk, model):
    """As Claude on Bedrock reads one: the answer continues the assistant's text (this verifier has no chat
    template: its plain transcript ends with that text), holds the continuation only, streamed as whole, counted
    as input; trailing whitespace and a forced tool call are refused."""
    prefill = "args = parser.parse_args("
    args = converse_args(model)
    args["messages"].append({"role": "assistant", "content": [{"text": prefill}]})
    whole = sdk.converse(**args)
    text = whole["output"]["message"]["content"][0]["text"]
    # the greedy continuation of the prompt that ends with the prefill, through the completions route
    transcript = f"system: {SYSTEM}\nuser: {PROMPT}\nassistant: {prefill}"
    with openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token) as client:
        expected = client.completions.create(model=model, prompt=transcript, max_tokens=24, temperature=0,
                                             extra_body={"specd": {"token_healing": False}})
    assert text == expected.choices[0].text and text != sdk.converse(**converse_args(model))[
        "output"]["message"]["content"][0]["text"]
    prompt_tokens = whole["usage"]["inputTokens"] + whole["usage"]["cacheReadInputTokens"]
    assert prompt_tokens == expected.usage.prompt_tokens
    events = list(sdk.converse_stream(**args)["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == text
    counted = sdk.count_tokens(modelId=model, input={"converse": {k: args[k] for k in ("system", "messages")}})
    assert counted["inputTokens"] == prompt_tokens
    empty = converse_args(model)
    empty["messages"].append({"role": "assistant", "content": [{"text": ""}]})
    assert sdk.converse(**empty)["output"]["message"]["content"][0]["text"] == \
        sdk.converse(**converse_args(model))["output"]["message"]["content"][0]["text"]

    spaced = converse_args(model)
    spaced["messages"].append({"role": "assistant", "content": [{"text": prefill + "\n"}]})
    forced = {**args, "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {
        "type": "object"}}}}], "toolChoice": {"any": {}}}}
    for refused, words in ((spaced, "final assistant content cannot end with trailing whitespace"),
                           (forced, "cannot be combined with a forced tool call")):
        with pytest.raises(ClientError) as raised:
            sdk.converse(**refused)
        assert raised.value.response["Error"]["Code"] == "ValidationException"
        assert words in raised.value.response["Error"]["Message"]


def test_every_door_writes_the_same_text_at_temperature_0(daemon, sdk, model):
    converse = sdk.converse(**converse_args(model))["output"]["message"]["content"][0]["text"]
    with openai.OpenAI(base_url=daemon.url + "/v1", api_key=daemon.token) as client:
        chat = client.chat.completions.create(model=model, max_tokens=24, temperature=0, messages=[
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}])
    assert converse == chat.choices[0].message.content
    genai = pytest.importorskip("google.genai")
    gemini = genai.Client(api_key=daemon.token, http_options={"base_url": daemon.url})
    answer = gemini.models.generate_content(model=model, contents=PROMPT, config={
        "system_instruction": SYSTEM, "max_output_tokens": 24, "temperature": 0})
    assert answer.text == converse


@pytest.mark.parametrize("case, status, code, words", [
    ("wrong secret", 403, "InvalidSignatureException", "signature we calculated does not match"),
    ("another key", 403, "UnrecognizedClientException", "is not specd's"),
    ("unknown model", 404, "ResourceNotFoundException", "this daemon serves"),
    ("bad body", 400, "ValidationException", "inferenceConfig.topP"),
    ("image", 400, "ValidationException", "only text is supported by specd, not image"),
    ("beyond the context", 400, "ValidationException", "the context window is 256 tokens"),
])
def test_errors_come_as_bedrocks_exceptions(daemon, model, case, status, code, words):
    keys = keys_of(daemon)
    if case == "wrong secret":
        keys = KeyPair(keys.access_key_id, "not-the-secret")
    elif case == "another key":
        keys = KeyPair("AKIAIOSFODNN7EXAMPLE", keys.secret_access_key)
    args = converse_args("anthropic.claude-3-haiku-20240307-v1:0" if case == "unknown model" else model)
    if case == "bad body":
        args["inferenceConfig"]["topP"] = 0
    elif case == "image":
        args["messages"][0]["content"].append({"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}})
    elif case == "beyond the context":
        args["messages"][0]["content"][0]["text"] = PROMPT * 100
    with pytest.raises(ClientError) as raised:
        bedrock(daemon.url, keys).converse(**args)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert raised.value.response["Error"]["Code"] == code and words in raised.value.response["Error"]["Message"]
    assert re.fullmatch(r"[0-9a-f-]{36}", raised.value.response["ResponseMetadata"]["RequestId"])


@pytest.mark.parametrize("messages, words", [
    # Bedrock's own rules and wording: an assistant's first message was read as a prefill of nothing
    ([{"role": "assistant", "content": [{"text": "Hi"}]}], "A conversation must start with a user message."),
    ([{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}],
     "A conversation must alternate between user and assistant roles (messages[0] and messages[1] are both user)"),
    # a turn with nothing in it was answered as if the caller had asked something
    ([{"role": "user", "content": []}], "'messages[0]' is a user message without text or a toolResult"),
    ([{"role": "user", "content": [{"text": ""}]}], "'messages[0]' is a user message without text or a toolResult"),
    ([{"role": "user", "content": [{"cachePoint": {"type": "default"}}]}], "without text or a toolResult"),
])
def test_conversations_bedrock_refuses_are_validation_exceptions(sdk, model, messages, words):
    with pytest.raises(ClientError) as raised:
        sdk.converse(modelId=model, messages=messages, inferenceConfig={"maxTokens": 2})
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert words in raised.value.response["Error"]["Message"], raised.value.response["Error"]["Message"]


def test_guarded_text_is_read_and_a_block_of_no_known_kind_is_refused(daemon, sdk, model):
    guarded = [{"role": "user", "content": [{"guardContent": {"text": {"text": PROMPT}}}]}]
    plain = [{"role": "user", "content": [{"text": PROMPT}]}]
    counts = [sdk.count_tokens(modelId=model, input={"converse": {"messages": m}})["inputTokens"] for m in (guarded, plain)]
    assert counts[0] == counts[1]
    status, kind, body = post_converse(daemon, model, {"messages": [{"role": "user", "content": [{"txt": "hello"}]}]})
    assert (status, kind) == (400, "ValidationException")
    assert "'messages[0].content[0]' holds 'txt': a block holds one of audio, cachePoint" in body["message"]


def test_a_stream_refused_before_its_first_token_is_a_validation_exception_at_the_call(sdk, model):
    """Not an eventstream exception after a 200 (errors after the first token are: test_stream_errors.py)."""
    args = converse_args(model)
    args["messages"][0]["content"][0]["text"] = PROMPT * 100
    with pytest.raises(ClientError) as raised:
        sdk.converse_stream(**args)
    assert not isinstance(raised.value, EventStreamError)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "the context window is 256 tokens" in raised.value.response["Error"]["Message"]


def test_unsigned_requests_and_foreign_hosts_are_refused_and_the_token_also_opens_the_door(daemon, model):
    async def post(headers: dict) -> tuple[int, str, dict]:
        body = {"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 2}}
        async with aiohttp.ClientSession() as s, \
                s.post(f"{daemon.url}/model/{model}/converse", json=body, headers=headers) as response:
            return response.status, response.headers.get("x-amzn-ErrorType", ""), await response.json()

    status, kind, body = asyncio.run(post({}))
    assert (status, kind) == (403, "MissingAuthenticationTokenException") and "missing" in body["message"]
    assert "sign it with SigV4 and specd's AWS key pair (`specd config bedrock`" in body["message"]
    status, kind, body = asyncio.run(post({**daemon.auth, "Host": "bedrock-runtime.attacker.example"}))
    assert (status, kind) == (403, "AccessDeniedException") and "loopback" in body["message"]
    status, kind, body = asyncio.run(post(daemon.auth))
    assert status == 200 and body["usage"]["outputTokens"] == 2
    metrics = urllib.request.urlopen(urllib.request.Request(daemon.url + "/metrics", headers=daemon.auth)).read()
    assert b'specd_door_requests_total{door="bedrock",status="403"}' in metrics  # /metrics counts the door


def test_a_client_that_hangs_up_cancels_the_generation(daemon, model):
    body = {"messages": [{"role": "user", "content": [{"text": PROMPT}]}], "inferenceConfig": {"maxTokens": 200}}
    hang_up_mid_stream(daemon, f"{daemon.url}/model/{model}/converse-stream", body, daemon.auth)


async def test_a_full_queue_is_a_throttling_exception():
    keys = KeyPair("SPECDTESTKEY00000000", "secret")
    async with full_queue(aws_keys=keys) as d:
        def refused() -> ClientError:
            with pytest.raises(ClientError) as raised:
                bedrock(d.url, keys).converse(modelId="fake-model", messages=[{"role": "user", "content": [{"text": "x"}]}])
            return raised.value

        error = await asyncio.get_running_loop().run_in_executor(None, refused)
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert error.response["Error"]["Code"] == "ThrottlingException" and "queue is full" in str(error)


def test_specd_config_bedrock_prints_a_profile_boto3_uses(daemon, model, tmp_path):
    printed = run_cli(specd_env(daemon.home), "config", "bedrock")
    assert printed.returncode == 0, printed.stderr
    config, credentials = printed.stdout.split("# ~/.aws/credentials")
    (tmp_path / "config").write_text(config)
    (tmp_path / "credentials").write_text(credentials.split("\n", 1)[1].split("# then")[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               AWS_PROFILE="specd")
    script = ("import boto3; r = boto3.client('bedrock-runtime').converse(modelId=%r, messages=[{'role': 'user', "
              "'content': [{'text': 'def f('}]}], inferenceConfig={'maxTokens': 3}); print(r['usage']['outputTokens'])"
              % model)
    ran = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip() == "3", ran.stderr


@pytest.mark.parametrize("script, tokens_line", [("bedrock_invoke_model.py", None),
                                                  ("bedrock_converse.py", r"^input \+ output tokens: [1-9]\d*$")])
def test_the_example_scripts_print_the_answer_and_specds_accounting(daemon, script, tokens_line):
    out = run_example(daemon, script)
    assert re.search(r"^specd: drafted [1-9]\d*, accepted \d+, verifier passes [1-9]\d*, ", out, re.M)
    if tokens_line:
        assert re.search(tokens_line, out, re.M)
    else:
        assert "max draft tokens 8" in out
