"""`GET /v1/models[/{model_id}]` for the Anthropic SDK (it sends `anthropic-version`): `models.retrieve` and
`models.list` return typed ModelInfo objects and pages in Anthropic's shapes, an unknown id is the SDK's
NotFoundError from Anthropic's error body, and the OpenAI SDK still gets OpenAI's shapes from the same routes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime

import anthropic
import openai
import pytest
from anthropic.pagination import SyncPage
from anthropic.types import ModelInfo

from .fake_engine import FakeEngine
from .served_engine import TOKEN, serve

SERVED = "org/tiny-model"  # a hub-style id: the SDKs send it inside the path


@pytest.fixture(scope="module")
def daemon():
    with serve(FakeEngine, verifier=SERVED) as served:
        yield served


@pytest.fixture(scope="module")
def sdk(daemon) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=daemon.url, api_key=TOKEN, max_retries=0)


def test_retrieve_answers_a_typed_model_info_for_each_served_name(sdk):
    for name in ("claude-specd", SERVED, "specd"):
        model = sdk.models.retrieve(name)
        assert isinstance(model, ModelInfo) and model.type == "model" and model.id == name
        assert model.display_name == f"{SERVED} (specd)" and model.lifecycle == "active"
        assert isinstance(model.created_at, datetime) and model.created_at.tzinfo is not None
        assert model.max_input_tokens == model.max_tokens == 64  # the fake engine's context window
    assert sdk.models.retrieve("claude-specd").model_dump() == sdk.models.list().data[1].model_dump()


def test_list_is_anthropics_page_of_model_infos(sdk):
    page = sdk.models.list()
    assert isinstance(page, SyncPage) and all(isinstance(m, ModelInfo) for m in page.data)
    assert [m.id for m in page.data] == [SERVED, "claude-specd"]
    assert (page.has_more, page.first_id, page.last_id) == (False, SERVED, "claude-specd")
    first = sdk.models.list(limit=1)
    assert [m.id for m in first.data] == [SERVED] and first.has_more is True
    assert [m.id for m in sdk.models.list(limit=1)] == [SERVED, "claude-specd"]  # the SDK pages by after_id
    assert [m.id for m in sdk.models.list(before_id="claude-specd").data] == [SERVED]


def test_an_unknown_model_is_anthropics_not_found_error(sdk):
    with pytest.raises(anthropic.NotFoundError) as raised:
        sdk.models.retrieve("claude-opus-9")
    assert raised.value.status_code == 404
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "not_found_error"
    assert raised.value.body["error"]["message"].startswith("model: claude-opus-9")
    with pytest.raises(anthropic.BadRequestError):
        sdk.models.list(limit=0)


def test_sdk_1x_headers_get_the_same_shape(daemon):
    """SDK 0.x/1.x send the token as x-api-key and anthropic-version 2023-06-01."""
    request = urllib.request.Request(daemon.url + "/v1/models/claude-specd",
                                     headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["type"] == "model"
    request = urllib.request.Request(daemon.url + "/v1/models/nope",
                                     headers={"x-api-key": TOKEN, "anthropic-version": "2023-06-01"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 404 and json.loads(raised.value.read())["error"]["type"] == "not_found_error"


def test_the_openai_sdk_still_gets_openais_shapes(daemon):
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key=TOKEN, max_retries=0)
    (listed,) = client.models.list().data
    assert (listed.id, listed.object, listed.owned_by) == (SERVED, "model", "specd")
    assert client.models.retrieve(SERVED).model_dump() == listed.model_dump()
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("claude-opus-9")
    assert raised.value.body["code"] == "model_not_found"
