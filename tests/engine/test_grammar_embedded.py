"""Structured output on the embedded default (SmolLM2 135M) on both backends: answers validate, and speculative
decoding with forced-token drafts writes exactly what constrained plain decoding writes."""

import json

import jsonschema
import pytest

from fixtures.embedded import embedded_home
from specd.daemon.engine.loop import EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine

pytestmark = pytest.mark.slow

CASES = [
    ("Extract the customer: Maria Gonzalez from Seville, Spain, customer since 2017, gold member.",
     {"type": "object", "additionalProperties": False, "required": ["name", "city", "since", "tier"],
      "properties": {"name": {"type": "string", "maxLength": 30}, "city": {"type": "string", "maxLength": 20},
                     "since": {"type": "integer", "minimum": 1990, "maximum": 2030},
                     "tier": {"enum": ["none", "silver", "gold"]}}}),
    ("Recommend a laptop for travel.",
     {"type": "object", "additionalProperties": False, "required": ["product", "reasons"],
      "properties": {"product": {"type": "string", "maxLength": 30},
                     "reasons": {"type": "array", "items": {"type": "string", "maxLength": 40},
                                 "minItems": 1, "maxItems": 2}}}),
]


@pytest.fixture(scope="module", params=["torch", "llamacpp"])
def engine(request, tmp_path_factory):
    if request.param == "llamacpp":
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'specd[llamacpp]')")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SPECD_HOME", str(embedded_home(tmp_path_factory.mktemp("home"))))
        yield load_engine(EngineConfig(verifier="smollm2-135m", backend=request.param, max_context=1024),
                          progress=lambda message: None)


def test_the_embedded_model_answers_the_schema_and_speculative_equals_plain(engine):
    for question, schema in CASES:
        prompt = engine.apply_chat_template([{"role": "user", "content": question + " Answer in JSON."}])
        answers = []
        for kwargs in ({"draft_tokens": 0}, {"forced_drafts": False}, {}):
            engine.pool.clear()
            answers.append(engine.generate(GenerationRequest(prompt=prompt, max_tokens=150, json_schema=schema,
                                                             **kwargs)))
        plain, drafter_only, forced = answers
        assert drafter_only.token_ids == plain.token_ids == forced.token_ids
        assert plain.finish_reason == "stop" and plain.stats.json_complete
        jsonschema.validate(json.loads(plain.text), schema)
        assert forced.stats.forced_tokens > 0
        assert forced.stats.verifier_passes < plain.stats.verifier_passes
