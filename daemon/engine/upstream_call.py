"""What engine/remote.py's RemoteEngine and an upstream client (models/upstream.py) exchange: plain types without
torch, so the API layer can name UpstreamError without loading the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from .requests import CancelToken


class UpstreamError(Exception):
    """The upstream could not serve the request. `status` is specd's answer: 503 (unreachable, an HTTP error, a
    stream that is not an OpenAI completions stream or breaks off), 504 (silent longer than its timeout), 400 (it
    refused the request itself). The message names the upstream's URL and what happened."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# upstreams (`owned_by` in their /v1/models) whose completions read token-id prompts and constrain output to a JSON
# schema (models/upstream_wire.py: SCHEMA_FIELDS)
TOKEN_AND_SCHEMA_SERVERS = ("vllm", "sglang", "llamacpp")


@dataclass
class UpstreamCall:
    """One completion asked of an upstream server: `prompt` as text or token ids (prompt_format "tokens"), `max_tokens`
    (tokens), `temperature`, `top_p`, `seed` (None: the upstream's choice), and optionally a JSON Schema the answer must
    follow or the strings it must be one of."""

    prompt: str | list[int]  # text, or token ids (prompt_format "tokens")
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    json_schema: dict | None = None  # the answer must be a document of it (True, any JSON value, arrives as {})
    text_choices: tuple[str, ...] | None = None  # or exactly one of these strings


@dataclass
class Piece:
    """One event of the upstream's stream (models/upstream_wire.py reads it). None: the event did not say."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    drafted_tokens: int | None = None
    accepted_tokens: int | None = None
    verifier_passes: int | None = None


class UpstreamClient(Protocol):
    """What engine/remote.py needs of an upstream client (models/upstream.HttpUpstream): its `url`, `model` and `server`
    (`owned_by` in its /v1/models), `stream` of Pieces, `describe()` (a dict for `specd status`), `check()` (a
    concurrent.futures.Future of describe() after asking the upstream now) and `close()`."""

    url: str
    model: str
    server: str | None  # what the upstream says it is (`owned_by` in /v1/models: vllm, sglang, llamacpp, ...)

    def stream(self, call: UpstreamCall, cancel: CancelToken) -> Iterator[Piece]:
        """The upstream's events; stops early (closing the connection) when `cancel` is set or when closed."""

    def describe(self) -> dict: ...

    def check(self): ...  # a concurrent.futures.Future of describe() after asking the upstream now

    def close(self) -> None: ...
