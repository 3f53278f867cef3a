"""From a cursor in an open document to the text to show there.

The order of the checks is the point of this module: the typed-ahead rest of the last suggestion, an empty
answer already given for this spot of this version, or a prefetch already running for this spot, is answered
without a new decode; otherwise wait out the debounce, ask the daemon, clean the result. One decode per
document is live at a time: a newer request for the same document cancels the older one, and cancelling a
request aborts its HTTP call.

Where the cursor rests (the editor's `specd/didMoveCursor` hint), the daemon is asked to read the prompt of
that spot into the document's cache and write nothing (`prefill_only`): the first completion there then feeds
only what was typed since, not the whole prompt (seconds on a CPU). A warm-up never displaces a completion.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from . import context, postprocess
from .client import DaemonClient, DaemonError
from .config import Settings
from .debounce import TypingPace
from .documents import Document, DocumentStore
from .typed_ahead import Point, TypedAhead


@dataclass
class Counters:
    """What `specd.status` reports; numbers only, never text."""

    requests: int = 0
    decodes: int = 0
    typed_ahead: int = 0
    remembered_empty: int = 0
    prefetches: int = 0
    warmups: int = 0
    superseded: int = 0
    failures: int = 0
    last: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Spot:
    """Where a decode answered: the same cursor in the same version under the same settings answers alike."""

    cursor: Point
    version: int
    settings: Settings


@dataclass
class _Live:
    """The one decode running for a document; requests for the same spot and version share it."""

    cursor: Point
    version: int
    task: asyncio.Task
    waiters: int = 0
    warm_up: bool = False  # reads the prompt into the daemon's cache only; answers no completion
    selected: "Selected | None" = None  # the completion item the prompt takes as typed (suggest's `selected`)


@dataclass(frozen=True)
class Selected:
    """The item the editor's completion list has selected (LSP 3.18 `selectedCompletionInfo`): it would replace the
    text from `start` (a Point on the cursor's line) to the cursor by `text`. A suggestion made while it is selected
    continues after it, as if it had been typed: VS Code shows ghost text only where it extends that item."""

    start: Point
    text: str


def text_before(doc: Document, cursor: Point, budget: int, selected: Selected | None = None) -> str:
    """Up to `budget` characters before the cursor (Document.prefix), ending with the `selected` item's text in
    place of what it replaces, as if it had been typed."""
    line, column = cursor
    if selected is None:
        return doc.prefix(line, column, budget)
    return doc.prefix(line, selected.start[1], budget) + selected.text


class Completer:
    """From a cursor in an open document to the suggestion to show (see the module docstring): `suggest` answers from
    the typed-ahead rest, a remembered empty answer, or a debounced decode of the daemon (POST /specd/v1/complete with
    the prefix and suffix cut to the settings' character budgets); `accepted` prefetches the next suggestion, `warm`
    asks for a warm-up (`prefill_only`). One decode per document at a time. Daemon failures go to `report` (the client
    shows a failed daemon start to the user) and answer ""; an editor's cancellation of `suggest` propagates
    (CancelledError)."""

    def __init__(self, docs: DocumentStore, client: DaemonClient, report: Callable[[str], None]) -> None:
        self.docs = docs
        self.client = client
        self.settings = Settings()
        self.pace = TypingPace()
        self.typed = TypedAhead()
        self.counters = Counters()
        self._report = report
        self._live: dict[str, _Live] = {}
        self._empty: dict[str, _Spot] = {}  # per document, the last spot a decode found nothing to suggest
        self._asked: dict[str, tuple[Point, int]] = {}  # per document, the last (cursor, version) sent to the daemon

    async def suggest(self, doc: Document, cursor: Point, selected: Selected | None = None) -> str:
        """The completion at `cursor`, "" when there is none (disabled, failed, stale or superseded). With
        `selected`, the completion that follows the selected item's text (which it does not include)."""
        self.counters.requests += 1
        if not self.settings.allows(doc.language_id):
            return ""
        if selected is None:
            rest = self.typed.remainder(doc.uri, cursor)
            if rest:
                self.counters.typed_ahead += 1
                return rest
            if self._empty.get(doc.uri) == _Spot(cursor, doc.version, self.settings):
                self.counters.remembered_empty += 1
                return ""
        live = self._live.get(doc.uri)
        if (live is None or live.warm_up or live.cursor != cursor or live.version != doc.version
                or live.selected != selected or live.task.done()):
            live = self._launch(doc, cursor, debounce=True, selected=selected)
        live.waiters += 1
        try:
            return await asyncio.shield(live.task)
        except asyncio.CancelledError:
            if not asyncio.current_task().cancelling():
                self.counters.superseded += 1
                return ""
            # The editor cancelled this request (pygls answers RequestCancelled); the decode goes too
            # unless another request for the same spot still waits for it.
            live.waiters -= 1
            if live.waiters == 0:
                live.task.cancel()
            raise

    def accepted(self, doc: Document, cursor: Point) -> None:
        """The user took the whole suggestion: start on the next one before they ask."""
        if self.settings.allows(doc.language_id):
            self.counters.prefetches += 1
            self._launch(doc, cursor, debounce=False)

    def warm(self, doc: Document, cursor: Point) -> None:
        """The cursor rests at `cursor`: have the daemon read that spot's prompt before the user types there.

        Nothing is sent when the daemon already got this spot of this version (a completion or warm-up), or
        while a completion for the document is running: its own prompt fills the cache."""
        if not (self.settings.allows(doc.language_id) and self.settings.warm_up):
            return
        if self._asked.get(doc.uri) == (cursor, doc.version):
            return
        live = self._live.get(doc.uri)
        if live is not None and not live.warm_up and not live.task.done():
            return
        self.counters.warmups += 1
        self._launch(doc, cursor, debounce=True, warm_up=True)

    def closed(self, uri: str) -> None:
        live = self._live.pop(uri, None)
        if live:
            live.task.cancel()
        self.typed.forget(uri)
        self.pace.forget(uri)
        self._empty.pop(uri, None)
        self._asked.pop(uri, None)

    def cancel_all(self) -> None:
        for uri in list(self._live):
            self._live.pop(uri).task.cancel()

    def _launch(self, doc: Document, cursor: Point, debounce: bool, warm_up: bool = False,
                selected: Selected | None = None) -> _Live:
        old = self._live.get(doc.uri)
        if old is not None:
            old.task.cancel()  # a newer request for this document: the older decode is aborted
        decode = self._decode(doc, cursor, doc.version, debounce, warm_up, selected)
        live = _Live(cursor, doc.version, asyncio.ensure_future(decode), warm_up=warm_up, selected=selected)
        live.task.add_done_callback(lambda task: self._finished(doc.uri, task))
        self._live[doc.uri] = live
        return live

    def _finished(self, uri: str, task: asyncio.Task) -> None:
        live = self._live.get(uri)
        if live is not None and live.task is task:
            del self._live[uri]
        if not task.cancelled():
            task.exception()  # retrieved so an unexpected error is not reported as "never retrieved"

    async def _decode(self, doc: Document, cursor: Point, version: int, debounce: bool, warm_up: bool,
                      selected: Selected | None = None) -> str:
        settings = self.settings
        if debounce:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(self.pace.delay(doc.uri, settings.debounce_ms / 1000, loop.time()))
        if doc.version != version or self.docs.get(doc.uri) is not doc:
            return ""
        line, column = cursor
        text = doc.line_text(line)
        prefix = text_before(doc, cursor, settings.prefix_chars, selected)
        before = text[:column] if selected is None else text[: selected.start[1]] + selected.text
        mode = postprocess.choose_mode(settings.mode, before, text[column:])
        suffix = doc.suffix(line, column, settings.suffix_chars)
        payload = {
            "prefix": prefix,
            "suffix": suffix,
            "language": doc.language_id,
            "path": context.display_path(doc.uri),
            "document_id": doc.uri,
            "mode": mode,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "draft_tokens": settings.draft_tokens,
            "extra_context": context.snippets(doc, self.docs, settings.extra_context_chars),
            "stop": [],
        }
        if warm_up:
            payload["prefill_only"] = True
        else:
            self.counters.decodes += 1
        self._asked[doc.uri] = (cursor, version)
        payload = _unicode_only(payload)
        started = time.perf_counter()
        try:
            reply = await self.client.complete(payload)
        except DaemonError as exc:
            self.counters.failures += 1
            self._report(f"specd: no {'warm-up' if warm_up else 'completion'}: {exc}")
            return ""
        if warm_up:
            return ""
        raw = reply.get("text")
        if not isinstance(raw, str):
            self.counters.failures += 1
            self._report("specd: no completion: the daemon's answer has no text")
            return ""
        self.counters.last = _timings(reply, time.perf_counter() - started, mode, len(prefix), len(suffix))
        if doc.version != version:
            return ""
        shown = postprocess.clean(raw, suffix, mode, cut_short=reply.get("finish_reason") == "length")
        shown = postprocess.LINE_BREAK.sub(doc.line_end(cursor[0]), shown)  # the model writes \n, mostly
        if selected is not None:  # typing on follows the editor's list, not this text
            return shown
        self.typed.remember(doc.uri, cursor, shown)
        if shown:
            self._empty.pop(doc.uri, None)
        else:
            self._empty[doc.uri] = _Spot(cursor, version, settings)
        return shown


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unicode_only(value):
    """`value` with each unpaired UTF-16 surrogate (an editor's buffer may hold one: its strings are UTF-16) in
    its strings replaced by U+FFFD, which the daemon, unlike a lone surrogate, can tokenize."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {key: _unicode_only(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unicode_only(item) for item in value]
    return value


def _timings(reply: dict, round_trip_s: float, mode: str, prefix_chars: int, suffix_chars: int) -> dict:
    stats = reply.get("specd") if isinstance(reply.get("specd"), dict) else {}
    return {
        "round_trip_s": round_trip_s,
        "engine_total_s": stats.get("total_s"),
        "queue_s": stats.get("queue_s"),
        "finish_reason": reply.get("finish_reason"),
        "mode": mode,
        "prefix_chars": prefix_chars,
        "suffix_chars": suffix_chars,
    }

