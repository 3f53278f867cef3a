"""The wire format of an OpenAI-compatible `/v1/completions` stream, as vLLM, SGLang, llama-server and
llama-cpp-python's server speak it: the request body specd sends and the events it reads.

Sources: OpenAI's API reference (Completions: `prompt`, `max_tokens`, `temperature`, `top_p`, `seed`, `stream`,
`stream_options.include_usage`; SSE `data:` events ending in `data: [DONE]`, `choices[0].text`,
`choices[0].finish_reason`, a last event with `usage`); vLLM's and SGLang's `stream_options.continuous_usage_stats`
(usage in every event, so a stream specd cuts short is still counted); llama-server's `timings` in the last event
(`draft_n`, `draft_n_accepted`, `cache_n`: tools/server/README.md); SGLang's `return_spec_tokens_details` and
`sglext.spec_tokens_details` (`spec_num_proposed_drafts`, `spec_num_correct_drafts`, `spec_verify_ct`; sglang PR
#33518); vLLM's Prometheus counters `vllm:spec_decode_num_draft_tokens_total`,
`vllm:spec_decode_num_accepted_tokens_total`, `vllm:spec_decode_num_drafts_total` (docs, Metrics), which count every
client's requests together and so are read as the upstream's totals, not per request.

`suffix` is never sent: vLLM refuses it and llama-cpp-python's server mishandles it; specd builds FIM prompts itself.

A JSON schema goes in each server's own field (`schema_field`): vLLM's `structured_outputs: {"json": schema}` (its
docs, Structured Outputs: from 0.10.2; earlier versions read `guided_json` and would ignore it), SGLang's `json_schema` as JSON text (its CompletionRequest in
protocol.py; `regex` for text choices), llama-server's `json_schema` as an object (`grammar`, GBNF, for text
choices; tools/server/README.md, /completion options, which
/v1/completions shares). Other servers (llama-cpp-python's takes GBNF grammars only) get none: RemoteEngine refuses
the request first.
"""

from __future__ import annotations

import json
import re

from specd.daemon.engine.upstream_call import Piece, UpstreamCall


SCHEMA_FIELDS = {  # upstream_call.TOKEN_AND_SCHEMA_SERVERS (the same servers), each with the body fields for a schema
    "vllm": lambda schema: {"structured_outputs": {"json": schema}},
    "sglang": lambda schema: {"json_schema": json.dumps(schema)},
    "llamacpp": lambda schema: {"json_schema": schema},
}


REGEX_SPECIALS = frozenset(".^$*+?()[]{}|\\")
CHOICE_FIELDS = {  # the same servers, each with the body fields for an answer that is one of a few strings
    "vllm": lambda choices: {"structured_outputs": {"choice": list(choices)}},
    "sglang": lambda choices: {"regex": "(" + "|".join(_regex_literal(c) for c in choices) + ")"},
    "llamacpp": lambda choices: {"grammar": "root ::= " + " | ".join(_gbnf_literal(c) for c in choices)},
}


def _regex_literal(text: str) -> str:
    """`text` matched literally by a regular expression: its metacharacters escaped and nothing else (re.escape also
    escapes spaces, an escape not every regex engine an upstream uses reads)."""
    return "".join("\\" + char if char in REGEX_SPECIALS else char for char in text)


def _gbnf_literal(text: str) -> str:
    r"""`text` as a GBNF string literal (llama.cpp's grammars/README.md: double quotes; `\\`, `\"`, `\n`, `\r`,
    `\t`, `\uHHHH` and `\UHHHHHHHH` escapes), anything outside printable ASCII escaped."""
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = []
    for char in text:
        if char in named:
            out.append(named[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def schema_field(schema: dict, server: str | None) -> dict:
    """The body fields that constrain `server`'s answer to `schema`. Raises KeyError for a server not in
    TOKEN_AND_SCHEMA_SERVERS (RemoteEngine refuses the request before)."""
    return SCHEMA_FIELDS[server](schema)


def request_body(call: UpstreamCall, model: str, server: str | None) -> dict:
    """`server`: the upstream's `owned_by` in /v1/models (vllm, sglang, llamacpp, ...), None when unknown."""
    body = {"prompt": call.prompt, "max_tokens": call.max_tokens, "temperature": call.temperature,
            "top_p": call.top_p, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    if model:  # else the server's default model (vLLM: the first it serves; llama-server: the one it has)
        body["model"] = model
    if call.seed is not None:
        body["seed"] = call.seed
    if server == "sglang":  # other servers would ignore it, vLLM with a warning in its log for every request
        body["return_spec_tokens_details"] = True
    if call.json_schema is not None:
        body.update(schema_field(call.json_schema, server))
    if call.text_choices is not None:
        body.update(CHOICE_FIELDS[server](call.text_choices))
    return body


class WireError(ValueError):
    """An event that is not an OpenAI completions stream event (the message says what came instead)."""


def read_event(line: bytes) -> Piece | None | str:
    """One line of the SSE stream: a Piece, "done" at `data: [DONE]`, None for lines that carry nothing (blank
    lines, `:` comments, pings, `event:` names)."""
    text = line.decode("utf-8", errors="replace").strip()
    if not text.startswith("data:"):
        return None
    data = text[5:].strip()
    if data == "[DONE]":
        return "done"
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        raise WireError(f"an event that is not JSON: {data[:200]!r}") from None
    if not isinstance(event, dict):
        raise WireError(f"an event that is not a JSON object: {data[:200]!r}")
    if "error" in event:
        error = event["error"]
        raise WireError(f"an error in its stream: {error.get('message', error) if isinstance(error, dict) else error}")
    choices = event.get("choices")
    if not isinstance(choices, list):
        raise WireError(f"an event without 'choices': {data[:200]!r}")
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    piece = Piece(text=choice.get("text") or "", finish_reason=choice.get("finish_reason"))
    _read_usage(piece, event.get("usage"))
    _read_timings(piece, event.get("timings"))
    _read_sglext(piece, event.get("sglext") or choice.get("sglext"))
    return piece


def _number(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read_usage(piece: Piece, usage) -> None:
    if not isinstance(usage, dict):
        return
    piece.prompt_tokens = _number(usage.get("prompt_tokens"))
    piece.completion_tokens = _number(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        piece.cached_tokens = _number(details.get("cached_tokens"))


def _read_timings(piece: Piece, timings) -> None:
    """llama-server: per request, in the last event."""
    if not isinstance(timings, dict):
        return
    piece.drafted_tokens = _number(timings.get("draft_n"))
    piece.accepted_tokens = _number(timings.get("draft_n_accepted"))
    if piece.cached_tokens is None:
        piece.cached_tokens = _number(timings.get("cache_n"))


def _read_sglext(piece: Piece, sglext) -> None:
    details = sglext.get("spec_tokens_details") if isinstance(sglext, dict) else None
    if not isinstance(details, dict):
        return
    piece.drafted_tokens = _number(details.get("spec_num_proposed_drafts"))
    piece.accepted_tokens = _number(details.get("spec_num_correct_drafts"))
    piece.verifier_passes = _number(details.get("spec_verify_ct"))


def error_message(status: int, body: bytes) -> str:
    """What an HTTP error answer says: OpenAI's `{"error": {"message"}}`, FastAPI's `{"detail"}`, or the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text[:300] or f"HTTP {status}"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
        for key in ("message", "detail", "error"):
            if parsed.get(key):
                return str(parsed[key])[:300]
    return text[:300]


_SPEC_COUNTERS = {"vllm:spec_decode_num_draft_tokens_total": "drafted_tokens",
                  "vllm:spec_decode_num_accepted_tokens_total": "accepted_tokens",
                  "vllm:spec_decode_num_drafts_total": "drafts"}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)")


def speculative_totals(metrics_text: str) -> dict | None:
    """vLLM's speculative-decoding counters summed over their labels (every engine of the server), with the
    acceptance rate; None when the server exports none."""
    totals: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) in _SPEC_COUNTERS:
            name = _SPEC_COUNTERS[match.group(1)]
            totals[name] = totals.get(name, 0.0) + float(match.group(3))
    if not totals:
        return None
    out = {name: int(value) for name, value in totals.items()}
    drafted = out.get("drafted_tokens", 0)
    out["acceptance_rate"] = round(out.get("accepted_tokens", 0) / drafted, 4) if drafted else None
    return out
