"""The engine when an upstream server does the model work (`upstream` in settings; README, Scale-out).

It reads a request exactly as the local Engine does (validation, the FIM prompt's layout and context fitting, chat
templates: those methods are Engine's), hands the prompt to an OpenAI-compatible `/v1/completions` stream through
`client` (models/upstream.py does the HTTP), and applies specd's own stop strings, `line`/`block` modes and
cancellation to the text that comes back. A stop, a cancel or a newer request for the document ends the iteration
over the client's stream, which closes the upstream connection: the server stops generating. No I/O here.

Not done upstream: token healing (it needs the model's logits on the first steps). JSON schemas go to servers that
constrain their output to one (vLLM, SGLang, llama-server: models/upstream_wire.py) and are refused for others.
"""

from __future__ import annotations

import json
import time

from .fim import bos_ids, decode_anchor, detect_template, encode_text
from .loop import Engine, EngineConfig, _stream
from .requests import CancelToken, GenerationRequest, GenerationResult, PromptTooLong, RequestError, Stats
from .stopping import StopRules, StopState, indent_width
from .upstream_call import TOKEN_AND_SCHEMA_SERVERS, Piece, UpstreamCall, UpstreamClient, UpstreamError

KNOWN_SERVERS = {"me": " (llama-cpp-python's server, which reads text prompts and GBNF grammars only)"}
CHECK_WAIT_S = 10.0  # how long a request waits for an upstream that has not named itself to answer GET /v1/models
COUNTED = ("prompt_tokens", "cached_tokens", "completion_tokens", "drafted_tokens", "accepted_tokens",
           "verifier_passes")


class RemoteEngine(Engine):
    """Engine's interface (`generate`, `validate`, `prompt_ids`, `apply_chat_template`, `info`, `close`) with the
    model behind `client`. Holds no weights, caches or drafters: only what reading a request needs."""

    def __init__(self, client: UpstreamClient, tokenizer, config: EngineConfig, prompt_format: str = "text",
                 tokenizer_name: str = "") -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.config = config
        self.prompt_format = prompt_format
        self.tokenizer_name = tokenizer_name
        self.drafter = None
        self.fim_template = detect_template(tokenizer)
        self.file_separator = None  # other files as comments: the upstream reads the prompt as text
        self.decode_anchor = tuple(decode_anchor(tokenizer))
        self.max_context = config.max_context
        first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.start_ids = [first] if first is not None else []

    def generate(self, request: GenerationRequest, cancel: CancelToken | None = None,
                 on_text=None) -> GenerationResult:
        started = time.perf_counter()
        self.validate(request)
        schema = getattr(request, "json_schema", None)
        prompt_ids = self.prompt_ids(request) or list(self.start_ids)
        if not prompt_ids:
            raise RequestError("the prompt is empty and the tokenizer has no start token (BOS or EOS) to begin from")
        if len(prompt_ids) >= self.max_context and not request.count_only:
            raise PromptTooLong(len(prompt_ids), self.max_context, "the upstream's model")
        stats = Stats(prompt_tokens=len(prompt_ids))
        cursor_line = request.prompt[request.prompt.rfind("\n") + 1:]
        rules = StopRules(eos_ids=frozenset(), stop=tuple(request.stop), mode=request.mode,
                          cursor_indent=indent_width(cursor_line),
                          max_tokens=min(request.max_tokens, self.max_context - len(prompt_ids)))
        output = StopState(rules, self.tokenizer, self.decode_anchor)
        if rules.max_tokens == 0 or request.prefill_only or request.count_only:  # no cache here to warm
            return self._done(output, "length", stats, started, on_text)
        self._check_server(schema, request.text_choices)
        cancel = cancel or CancelToken()
        call = UpstreamCall(self.wire_prompt(request, prompt_ids), rules.max_tokens, float(request.temperature),
                            float(request.top_p), request.seed, {} if schema is True else schema,
                            request.text_choices)
        received, reason = [], None
        pieces = self.client.stream(call, cancel)
        try:
            for piece in pieces:
                _count(stats, piece)
                if piece.text:
                    if not received:
                        stats.prefill_s = time.perf_counter() - started  # the upstream's time to first text
                    received.append(piece.text)
                    if output.add_text(piece.text):
                        reason = "stop"
                        break
                if piece.finish_reason is not None:  # usage may follow in a last event
                    reason = "length" if piece.finish_reason == "length" else "stop"
                _stream(output, on_text)
        finally:
            pieces.close()  # a stop rule or a cancel ended it early: the upstream connection closes here
        if cancel.cancelled and output.finish_reason is None:
            reason = "cancelled"
        if stats.completion_tokens == 0 and received:  # the upstream's usage never came (a cut stream)
            stats.completion_tokens = len(encode_text(self.tokenizer, "".join(received)))
        stats.verify_s = max(0.0, time.perf_counter() - started - stats.prefill_s)
        if schema is not None:  # the upstream kept to the schema; whether the document was finished
            stats.json_complete = _is_json(output.text)
        elif request.text_choices is not None:
            stats.json_complete = output.text in request.text_choices
        return self._done(output, reason or "stop", stats, started, on_text)

    def _server(self) -> str | None:
        """What the upstream says it is; one that has not said yet (it was not answering when specd loaded) is
        asked again first."""
        if self.client.server is None:
            try:
                self.client.check().result(timeout=CHECK_WAIT_S)
            except Exception:  # noqa: BLE001 - still unknown
                pass
        return self.client.server

    def _check_server(self, schema, choices) -> None:
        """UpstreamError when the upstream is a specd daemon (requests would wait on themselves until the timeout);
        RequestError when it cannot take what the request needs: a JSON schema, text choices, or token ids
        (prompt_format)."""
        server = self.client.server
        if server == "specd":
            raise UpstreamError(503, f"the upstream {self.client.url} is a specd daemon (its /v1/models says "
                                     "owned_by specd): point `upstream` at the serving engine (vLLM, SGLang, "
                                     "llama-server)")
        needs = [what for what, wanted in (("a JSON schema", schema is not None),
                                           ("a choice of texts (text/x.enum)", choices is not None),
                                           ('prompt_format "tokens"', self.prompt_format == "tokens")) if wanted]
        if not needs or self._server() in TOKEN_AND_SCHEMA_SERVERS:
            return
        server = self.client.server
        said = f"says it is {server!r}{KNOWN_SERVERS.get(server, '')}" if server else "has not said what it is"
        fix = " (or set prompt_format to \"text\")" if self.prompt_format == "tokens" else ""
        raise RequestError(f"{' and '.join(needs)} needs an upstream that reads it: vLLM, SGLang or llama-server, as "
                           f"`owned_by` in its /v1/models names them{fix}; {self.client.url} {said}")

    def wire_prompt(self, request: GenerationRequest, prompt_ids: list[int]) -> str | list[int]:
        """What the upstream reads: specd's token ids, or their text. A prompt sent as written (no suffix, no
        fitting) is sent as written; a leading BOS is left to the upstream, which adds its own."""
        if self.prompt_format == "tokens":
            return prompt_ids
        bos = bos_ids(self.tokenizer)  # what the tokenizer adds to plain text, which the upstream adds again
        if request.suffix is None and not request.fit_context and request.prompt:
            text = self.tokenizer.bos_token if bos else None  # SmolLM2's `<|im_start|>` is no added BOS: kept
            return request.prompt[len(text):] if text and request.prompt.startswith(text) else request.prompt
        ids = prompt_ids[len(bos):] if bos and prompt_ids[:len(bos)] == bos and len(prompt_ids) > len(bos) \
            else prompt_ids
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _done(self, output: StopState, reason: str, stats: Stats, started: float, on_text) -> GenerationResult:
        output.finish_reason = reason
        _stream(output, on_text)
        stats.total_s = time.perf_counter() - started
        return GenerationResult(output.text, [], reason, stats, output.stop_sequence)

    @property
    def verifier_name(self) -> str:
        """The upstream's model: its setting, else the first its /v1/models listed (learnt at load or later)."""
        return self.client.model

    def info(self) -> dict:
        return {
            "verifier": self.verifier_name, "drafter": None, "drafter_model": None, "draft_strategy": "upstream",
            "max_draft_tokens": None, "backend": "upstream", "device": self.client.url, "dtype": None,
            "memory_bytes": 0, "max_context": self.max_context, "tokenizer": self.tokenizer_name,
            "fim_template": self.fim_template.family if self.fim_template else None,
            "upstream": self.client.describe(),
        }

    def check_upstream(self):
        """A concurrent.futures.Future of the upstream's description after asking it now (specd status)."""
        return self.client.check()

    def close(self) -> None:
        self.client.close()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _count(stats: Stats, piece: Piece) -> None:
    """The upstream's own counts replace specd's estimates as they arrive (cumulative in every server)."""
    for name in COUNTED:
        value = getattr(piece, name)
        if value is not None:
            setattr(stats, name, value)
