"""The `upstream` setting: an OpenAI-compatible completions server (vLLM, SGLang, llama-server) that does the
model work while specd keeps everything else (README, Scale-out).

    "upstream": {"url": "http://gpu-box:8000", "key": "...", "model": "Qwen/Qwen2.5-Coder-7B",
                 "tokenizer": "Qwen/Qwen2.5-Coder-7B", "timeout": 20, "prompt_format": "text"}

Only `url` is required. `tokenizer` (a hub id, a model folder, a `tokenizer.json`, a `.gguf` or an embedded name)
builds the FIM prompts and counts tokens; it defaults to `model`. `timeout`: seconds the upstream may stay silent
(before its first byte, or between two stream events) before the request fails with 504. `prompt_format`: `text`
(the prompt as a string, which every such server reads) or `tokens` (specd's token ids, which vLLM, SGLang and
llama-server read and llama-cpp-python's server does not).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

FIELDS = {"url": str, "key": str, "model": str, "tokenizer": str, "timeout": (int, float), "prompt_format": str}
PROMPT_FORMATS = ("text", "tokens")
DEFAULT_TIMEOUT = 20.0


class UpstreamSettingError(ValueError):
    """An `upstream` setting that is not valid; the message says which field and why (settings.py adds where the value
    came from)."""

    pass


def check_upstream(value: Any) -> dict | None:
    """The setting as given (null, or an object of FIELDS), checked; raises UpstreamSettingError saying why."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UpstreamSettingError("expected null or an object {url, key, model, tokenizer, timeout, prompt_format}")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise UpstreamSettingError(f"unknown field {unknown[0]!r}; known: {', '.join(FIELDS)}")
    for name, kind in FIELDS.items():
        if name in value and (not isinstance(value[name], kind) or isinstance(value[name], bool)):
            raise UpstreamSettingError(f"{name!r} must be a {'number' if name == 'timeout' else 'string'}, "
                                       f"got {json.dumps(value[name])}")
    url = value.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise UpstreamSettingError(f"'url' must be an http(s) URL such as http://gpu-box:8000, got {json.dumps(url)}")
    if value.get("timeout", DEFAULT_TIMEOUT) <= 0:
        raise UpstreamSettingError(f"'timeout' must be > 0, got {value['timeout']}")
    if value.get("prompt_format", "text") not in PROMPT_FORMATS:
        raise UpstreamSettingError(f"'prompt_format' must be one of {', '.join(PROMPT_FORMATS)}, "
                                   f"got {json.dumps(value['prompt_format'])}")
    return dict(value)


def parse_upstream_text(text: str) -> Any:
    """An environment variable or flag: a JSON object, or just the URL."""
    text = text.strip()
    if text.lower() in ("", "none", "null"):
        return None
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UpstreamSettingError(f"column {e.colno}: {e.msg}") from None
    return {"url": text}
