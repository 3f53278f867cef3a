"""The JSONC reader/editor behind `specd config --write`."""

import json

import pytest

from specd.daemon.config import jsonc

PATCH = {"edit_predictions": {"provider": "open_ai_compatible_api", "open_ai_compatible_api": {"max_output_tokens": 64}}}


def test_loads_comments_and_trailing_commas():
    text = '// top\n{\n  "a": [1, 2,], /* b */ "b": {"c": "// not a comment",},\n}\n'
    assert jsonc.loads(text) == {"a": [1, 2], "b": {"c": "// not a comment"}}


@pytest.mark.parametrize("bad", ['{"a": 1', '{"a" 1}', '{"a": 1} x', "{/* }", '{"a": tru}', '{"a": "x\n"}'])
def test_bad_text_is_an_error_with_a_position(bad):
    with pytest.raises(jsonc.JSONCError, match=r"line \d+ column \d+"):
        jsonc.loads(bad)


def test_top_level_must_be_an_object():
    with pytest.raises(jsonc.JSONCError, match="not an object"):
        jsonc.merge("[1]", PATCH)


@pytest.mark.parametrize("text", [
    "{}",
    '{"a": 1}',
    '{\n    "a": 1 // keep me\n}\n',
    '{\n  "a": 1,\n  // "b": 2,\n}\n',
    '{\r\n  "edit_predictions": {\r\n    "mode": "eager" /* keep */\r\n  }\r\n}\r\n',
    '// only a comment\n',
    "",
])
def test_merge_sets_values_keeps_the_rest_and_is_idempotent(text):
    out, changes = jsonc.merge(text, PATCH)
    merged = jsonc.loads(out)
    assert merged["edit_predictions"]["provider"] == "open_ai_compatible_api"
    assert merged["edit_predictions"]["open_ai_compatible_api"] == {"max_output_tokens": 64}
    before = jsonc.loads(text) or {}
    for key, value in before.items():
        if key != "edit_predictions":
            assert merged[key] == value
    for comment in ("keep me", '// "b": 2,', "/* keep */", "// only a comment"):
        assert (comment in out) == (comment in text)
    if "\r\n" in text:
        assert out.count("\n") == out.count("\r\n")
    assert changes
    again, more = jsonc.merge(out, PATCH)
    assert again == out and more == []


def test_merge_replaces_a_changed_leaf_only():
    text = '{\n  "x": {\n    "keep": true, // mine\n    "port": 1\n  }\n}\n'
    out, changes = jsonc.merge(text, {"x": {"port": 2}})
    assert out == text.replace('"port": 1', '"port": 2')
    assert [(c.path, c.old, c.new) for c in changes] == [(("x", "port"), 1, 2)]


def test_merge_into_an_empty_object_indents_like_the_file():
    text = '{\n    "a": {},\n    "b": 1\n}\n'
    out, _ = jsonc.merge(text, {"a": {"k": [1]}})
    assert '    "a": {\n        "k": [\n            1\n        ]\n    },' in out
    assert json.loads(out) == {"a": {"k": [1]}, "b": 1}
