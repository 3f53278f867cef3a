"""Model listing through the official SDKs: OpenAI's `models.retrieve` (`GET /v1/models/{model}`) and google-genai's
`models.list` / `models.get` (Gemini API on v1 and v1beta, Vertex express mode) in Google's shapes and errors, while
`GET /v1/models` keeps answering OpenAI's and Anthropic's clients in their own shapes."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import openai
import pytest

from .fake_engine import FakeEngine
from .served_engine import TOKEN, serve

genai = pytest.importorskip("google.genai")
from google.genai import errors, types  # noqa: E402

SERVED = "org/tiny-model"  # a hub-style id: the OpenAI SDK sends it inside the path


@pytest.fixture(scope="module")
def daemon():
    with serve(FakeEngine, verifier=SERVED) as served:
        yield served


@pytest.fixture(scope="module")
def sdk(daemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)


def google(daemon, **options) -> "genai.Client":
    return genai.Client(api_key=TOKEN, http_options=types.HttpOptions(
        base_url=daemon.url, retry_options=types.HttpRetryOptions(attempts=1), **options.pop("http", {})), **options)


def get(daemon, path: str, **headers) -> tuple[int, dict]:
    request = urllib.request.Request(daemon.url + path, headers={"Authorization": f"Bearer {TOKEN}", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_openai_retrieve_answers_the_list_entry_for_a_served_name(sdk):
    (listed,) = sdk.models.list().data
    assert listed.id == SERVED
    assert sdk.models.retrieve(SERVED).model_dump() == listed.model_dump()
    alias = sdk.models.retrieve("specd")
    assert alias.id == "specd" and alias.object == "model" and alias.owned_by == "specd"


def test_openai_retrieve_of_an_unknown_model_is_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.models.retrieve("gpt-4o")
    body = raised.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model" and body["type"] == "invalid_request_error"
    assert "'gpt-4o' does not exist" in body["message"] and SERVED in body["message"]


@pytest.mark.parametrize("call", ["completions", "chat"])
def test_a_generation_for_an_unknown_model_fails_as_retrieving_it_does(sdk, call):
    """OpenAI's error for a model it does not have (type, param and code), on the generation routes as on GET."""
    with pytest.raises(openai.NotFoundError) as raised:
        if call == "completions":
            sdk.completions.create(model="gpt-4o", prompt="def f():", max_tokens=2)
        else:
            sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    error = raised.value
    assert (error.code, error.param, error.type) == ("model_not_found", "model", "invalid_request_error")
    assert "'gpt-4o' does not exist" in error.message and SERVED in error.message
    with pytest.raises(openai.BadRequestError) as raised:  # other errors: the HTTP status as the code, no param
        sdk.completions.create(model=SERVED, prompt="x", max_tokens=-1)
    assert (raised.value.code, raised.value.param) == ("400", None)  # the SDK reads every code as a string


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_google_genai_lists_and_gets_the_served_model(daemon, caplog, version):
    client = google(daemon, http={"api_version": version})
    with caplog.at_level(logging.WARNING, logger="google_genai"):
        (model,) = list(client.models.list())
    assert "Cannot determine the models type" not in caplog.text
    assert model.name == f"models/{SERVED}" and "generateContent" in model.supported_actions
    assert model.input_token_limit == model.output_token_limit == 64  # the engine's context window
    got = client.models.get(model="specd")
    assert got.name == "models/specd" and got.display_name == model.display_name
    with pytest.raises(errors.ClientError) as raised:
        client.models.get(model="gemini-2.5-pro")
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"
    assert "models/gemini-2.5-pro is not found" in raised.value.message


def test_vertex_express_mode_lists_publisher_models(daemon):
    client = google(daemon, vertexai=True)
    (model,) = list(client.models.list())
    assert model.name == f"publishers/google/models/{SERVED}"
    assert client.models.get(model="specd").name == "publishers/google/models/specd"
    with pytest.raises(errors.ClientError) as raised:
        client.models.get(model="nope")
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"
    status, body = get(daemon, "/v1/projects/p/locations/us-central1/publishers/google/models")
    assert status == 200 and body["publisherModels"][0]["name"] == f"publishers/google/models/{SERVED}"


def test_v1_models_answers_each_client_in_its_own_shape(daemon):
    assert get(daemon, "/v1/models")[1]["object"] == "list"  # OpenAI
    assert get(daemon, "/v1/models", **{"anthropic-version": "2023-06-01"})[1]["has_more"] is False  # Anthropic
    assert get(daemon, "/v1/models", **{"x-goog-api-client": "google-genai-sdk/3"})[1]["models"][0]["name"] \
        == f"models/{SERVED}"  # Google, by its client header
    assert get(daemon, f"/v1/models/specd?key={TOKEN}")[1]["name"] == "models/specd"  # Google, by ?key=
    status, body = get(daemon, "/v1/models/nope", **{"x-goog-api-key": TOKEN})
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
    status, body = get(daemon, "/v1/models/nope")
    assert status == 404 and body["error"]["code"] == "model_not_found"
    status, body = get(daemon, "/v1beta/models", Authorization="Bearer wrong")
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"


def test_gemini_methods_under_v1_models_stay_the_gemini_doors(daemon):
    """POST /v1/models/{model}:generateContent shares its first path segments with OpenAI's retrieve route: errors
    there are still worded by the Gemini door, with or without Google's headers."""
    request = urllib.request.Request(daemon.url + "/v1/models/nope:generateContent", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 404 and json.loads(raised.value.read())["error"]["status"] == "NOT_FOUND"
    status, body = get(daemon, "/v1/models/specd:generateContent")  # GET: not a model this door lists
    assert status == 404 and body["error"]["status"] == "NOT_FOUND"
