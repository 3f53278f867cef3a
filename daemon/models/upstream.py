"""An upstream server as specd's model: the HTTP client behind engine/remote.py's RemoteEngine, and its loading
(`upstream` in settings; README, Scale-out).

The client runs aiohttp on an event loop of its own thread, so the scheduler's worker thread (which calls
`generate`) reads a stream as an iterator and keeps one pool of connections to the upstream across requests.
Closing the iterator early (a stop rule, a cancel) cancels the request there, which closes its connection: vLLM,
SGLang, llama-server and llama-cpp-python's server all stop generating when their client goes away.

Failures become UpstreamError with specd's status and the upstream's URL: 503 when it cannot be reached, answers
an HTTP error, or sends something that is not a completions stream (or breaks it off), 504 when it stays silent
longer than `timeout`, 400 when it refuses the request itself (400/413/422). Nothing is sticky: the next request
tries again, so specd recovers as soon as the upstream does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

import aiohttp

from specd.daemon.config.upstream import DEFAULT_TIMEOUT
from specd.daemon.engine.remote import RemoteEngine
from specd.daemon.engine.upstream_call import Piece, UpstreamCall, UpstreamError
from .loading import gguf_file, gguf_tokenizer, hub_model
from .upstream_wire import WireError, error_message, read_event, request_body, speculative_totals

log = logging.getLogger("specd.upstream")

CANCEL_POLL_S = 0.02  # how often a waiting stream looks at the cancel token
CHECK_TIMEOUT_S = 2.0  # each of the two status questions: `specd status` waits 5 s for the whole answer
_END = object()


class HttpUpstream:
    """An upstream OpenAI-compatible completions server (`upstream` in settings), the UpstreamClient of
    engine/remote.py: `stream` POSTs /v1/completions with `stream: true` and yields its Server-Sent Events as Pieces
    (raising UpstreamError: 503, 504 after `timeout` seconds of silence, 400), on an aiohttp session with a Bearer `key`
    whose event loop runs on a thread of its own. `url` may end in /v1 (dropped); `model` "" until set or learnt from
    /v1/models by `check`. `close()` ends the session and the thread."""

    def __init__(self, url: str, key: str | None = None, model: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        base = url.rstrip("/")
        self.url = base[:-3] if base.endswith("/v1") else base
        self.key, self.model, self.timeout = key, model or "", float(timeout)
        self.server: str | None = None  # `owned_by` in /v1/models: vllm, sglang, llamacpp, ...
        self.state: dict = {"answering": None, "checked_at": None, "error": None, "models": [], "speculative": None}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="specd-upstream", daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession = self._call(self._open()).result()

    def _call(self, coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _open(self) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=None))

    # ---- completions ------------------------------------------------------------------------------------------

    def stream(self, call: UpstreamCall, cancel) -> Iterator[Piece]:
        events: queue.Queue = queue.Queue()
        future = self._call(self._post(request_body(call, self.model, self.server), events))
        try:
            while not cancel.cancelled:
                try:
                    item = events.get(timeout=CANCEL_POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()  # still streaming: cancelled there, which closes the connection

    async def _post(self, body: dict, events: queue.Queue) -> None:
        try:
            await self._read_stream(body, events)
            self._mark(None)
            events.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure reaches the caller as an UpstreamError
            error = self._explain(e)
            self._mark(str(error))
            events.put(error)

    async def _read_stream(self, body: dict, events: queue.Queue) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.timeout,
                                        sock_read=self.timeout)
        response = await self._session.post(self.url + "/v1/completions", json=body, timeout=timeout)
        finished = False
        try:
            if response.status != 200:
                raise UpstreamError(400 if response.status in (400, 413, 422) else 503,
                                    f"the upstream {self.url} answered HTTP {response.status}: "
                                    f"{error_message(response.status, await response.read())}")
            kind = response.headers.get("Content-Type", "")
            if not kind.startswith("text/event-stream"):
                sample = (await response.content.read(200)).decode("utf-8", errors="replace")
                raise UpstreamError(503, f"the upstream {self.url} answered {kind or 'no Content-Type'} instead of an "
                                         f"event stream (is it an OpenAI-compatible server?): {sample!r}")
            async for line in response.content:
                event = read_event(line)
                if event == "done":
                    finished = True
                    return
                if event is not None:
                    events.put(event)
            raise UpstreamError(503, f"the upstream {self.url} ended its stream without `data: [DONE]` "
                                     "(it closed the connection mid-answer)")
        finally:
            if finished:
                response.release()
            else:  # cut short (an error, a stop rule, a cancel): the upstream sees its client go away
                response.close()

    def _explain(self, e: Exception) -> UpstreamError:
        if isinstance(e, UpstreamError):
            return e
        if isinstance(e, WireError):
            return UpstreamError(503, f"the upstream {self.url} sent {e}")
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return UpstreamError(504, f"the upstream {self.url} sent nothing for {self.timeout:g} s "
                                      "(upstream `timeout` in settings)")
        if isinstance(e, aiohttp.ClientConnectorError):
            return UpstreamError(503, f"the upstream {self.url} cannot be reached: {e.os_error.strerror or e}")
        if isinstance(e, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            return UpstreamError(503, f"the upstream {self.url} closed the connection mid-answer ({type(e).__name__})")
        log.warning("upstream request failed", exc_info=e)
        return UpstreamError(503, f"the upstream {self.url} failed: {type(e).__name__}: {e}")

    def _mark(self, error: str | None) -> None:
        self.state.update(answering=error is None or " answered " in error, checked_at=time.time(), error=error)

    # ---- status ------------------------------------------------------------------------------------------------

    def check(self) -> concurrent.futures.Future:
        """Ask the upstream now (GET /v1/models, and /metrics for vLLM's speculative counters); a Future of
        describe()."""
        return self._call(self._check())

    async def _check(self) -> dict:
        timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S)
        try:
            async with self._session.get(self.url + "/v1/models", timeout=timeout) as response:
                if response.status != 200:
                    raise UpstreamError(503, f"the upstream {self.url} answered HTTP {response.status} to GET /v1/models: "
                                             f"{error_message(response.status, await response.read())}")
                listed = (await response.json(content_type=None)).get("data") or []
            self.state["models"] = [m.get("id") for m in listed if isinstance(m, dict)]
            if not self.model and self.state["models"]:  # the server's default, learnt once it answers
                self.model = str(self.state["models"][0])
            served = next((m for m in listed if isinstance(m, dict) and m.get("id") == self.model), None) \
                or (listed[0] if listed and isinstance(listed[0], dict) else {})
            self.server = served.get("owned_by")
            self.state["max_model_len"] = served.get("max_model_len")
            self._mark(None)
        except Exception as e:  # noqa: BLE001 - reported in the status
            self._mark(str(self._explain(e)))
            return self.describe()
        try:
            async with self._session.get(self.url + "/metrics", timeout=timeout) as response:
                if response.status == 200:
                    self.state["speculative"] = speculative_totals(await response.text())
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # optional: only vLLM and SGLang export it
        return self.describe()

    def describe(self) -> dict:
        checked = self.state["checked_at"]
        return {"url": self.url, "model": self.model or None, "server": self.server, **self.state,
                "checked_s_ago": round(time.time() - checked, 1) if checked else None}

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._session.close()).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


# ---- loading ----------------------------------------------------------------------------------------------------

def load_tokenizer(spec: str, progress=print):
    """The tokenizer that builds the upstream's prompts: an embedded name or `.gguf` (its vocabulary), a
    `tokenizer.json`, a model folder or a hub id."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    gguf = gguf_file(spec, progress)
    if gguf is not None:
        return gguf_tokenizer(gguf, progress)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        return PreTrainedTokenizerFast(tokenizer_file=str(path))
    if path.is_dir():
        return AutoTokenizer.from_pretrained(path)
    if path.is_absolute() or spec.startswith((".", "~")) or spec.count("/") != 1:
        raise FileNotFoundError(f"upstream tokenizer not found: {spec!r} (a hub id, a folder, a tokenizer.json, a "
                                ".gguf or an embedded name)")
    return AutoTokenizer.from_pretrained(hub_model(spec, progress, marker="tokenizer_config.json"))  # a hub id


def load_upstream_engine(upstream: dict, config, progress=print) -> RemoteEngine:
    """A RemoteEngine over the `upstream` setting (a checked dict, config/upstream.py): asks the server once (an
    upstream that does not answer yet is reported, not refused) and loads the tokenizer that builds its prompts
    (`tokenizer`, else `model`). Raises ValueError when neither names one, and what `load_tokenizer` raises
    (FileNotFoundError, HubUnreachableError); the client is closed on any failure."""
    client = HttpUpstream(upstream["url"], upstream.get("key"), upstream.get("model"),
                          upstream.get("timeout", DEFAULT_TIMEOUT))
    try:
        state = client.check().result(timeout=CHECK_TIMEOUT_S * 3)
        served = ", ".join(map(str, state["models"])) or "nothing its /v1/models lists (a wrong URL or key?)"
        progress(f"upstream {client.url}: " + (f"answers, serving {served}" if state["answering"]
                                               else f"not answering yet ({state['error']})"))
        spec = upstream.get("tokenizer") or client.model
        if not spec:
            raise ValueError("the upstream setting needs 'tokenizer' (or a 'model' named by a hub id) to build "
                             "prompts with")
        progress(f"loading the upstream's tokenizer {spec} ...")
        tokenizer = load_tokenizer(spec, progress)
    except BaseException:
        client.close()
        raise
    engine = RemoteEngine(client, tokenizer, config, upstream.get("prompt_format", "text"), spec)
    progress(f"ready: model work goes to {client.url} ({client.model or 'its default model'}); FIM template "
             f"{engine.fim_template.family if engine.fim_template else 'none (plain completion)'}")
    return engine
