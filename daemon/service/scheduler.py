"""One inference worker thread owns the engine; HTTP handlers hand it jobs through a bounded queue.

- Over the bound: QueueFull (the server answers 503 with Retry-After).
- A newer job with the same document id cancels the older one ("superseded").
- The caller's cancellation (client disconnect) and a per-request deadline cancel the job; the engine
  checks the CancelToken between decoding steps, so the worker is free again within one step.
- keep_alive: after that many idle seconds the engine is closed; the next job loads it again. There is
  never more than one engine, so never the same model twice in memory.
- Idle work: once no job came for IDLE_WORK_AFTER seconds, the worker runs the engine's idle work (measuring
  llama.cpp's pass costs again, draft_policy.PassCosts), which stops before its next pass when a job arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .metrics import Metrics

log = logging.getLogger("specd.scheduler")

_STOP = object()
IDLE_WORK_AFTER = 5.0  # seconds without a job before the engine's idle work runs


def _warm_up(request: Any) -> bool:
    """Whether a job's request only reads a prompt into a document's cache (prefill_only)."""
    return bool(getattr(request, "prefill_only", False))


class QueueFull(Exception):
    """The inference queue holds `queue_size` jobs already; the server answers 503 with a Retry-After of `retry_after`
    seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the inference queue is full; retry shortly")
        self.retry_after = retry_after


class EngineUnavailable(Exception):
    """The models could not be loaded (message says why) or the daemon is shutting down."""


class JobCancelled(Exception):
    """A job ended without its result: `reason` is "superseded", "deadline", "disconnect" or "shutdown" ("cancelled"
    when none was recorded); `result` the partial GenerationResult when the engine had started, else None."""

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason  # "superseded" | "deadline" | "disconnect" | "shutdown"
        self.result = result  # the partial GenerationResult when the engine had started, else None


@dataclass(eq=False)
class Job:
    """One queued request: the GenerationRequest (or a callable(engine) -> GenerationRequest run on the worker), its
    CancelToken, the `document_id` that supersedes older jobs, the `on_text` callback for streamed text (called on the
    worker thread), `enqueued_at` (time.monotonic() seconds), the Future of its GenerationResult, and the first
    `cancel_reason`."""

    request: Any  # a GenerationRequest, or a callable(engine) -> GenerationRequest run on the worker
    cancel: Any  # CancelToken
    document_id: str | None
    on_text: Callable[[str], None] | None
    enqueued_at: float
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancel_reason: str | None = None

    def cancel_with(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel.cancel()


def _consume_outcome(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # nobody awaits it any more; read it so asyncio does not warn


class Scheduler:
    """One worker thread that owns the engine, fed through a queue of at most `queue_size` jobs (see the module
    docstring). `submit` raises QueueFull or EngineUnavailable (shutting down); `run`/`wait` return the GenerationResult
    or raise JobCancelled, EngineUnavailable (the models failed to load) or what the engine raised. `request_timeout`
    and `keep_alive` are seconds (a negative keep_alive never unloads); `load_engine` is called with a progress callback
    on the worker thread."""

    def __init__(
        self,
        load_engine: Callable[[Callable[[str], None]], Any],
        new_cancel_token: Callable[[], Any],
        metrics: Metrics,
        *,
        queue_size: int,
        request_timeout: float,
        keep_alive: float,
        progress: Callable[[str], None] = lambda msg: log.info("%s", msg),
        on_load_failed: Callable[[str], None] | None = None,
    ) -> None:
        self._load_engine = load_engine
        self._new_cancel_token = new_cancel_token
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.keep_alive = keep_alive
        self._progress = progress
        self._on_load_failed = on_load_failed
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.RLock()
        self._latest_by_document: dict[str, Job] = {}
        self._current: Job | None = None
        self._unfinished = 0  # submitted jobs whose outcome is not set yet (queued or running)
        self._thread = threading.Thread(target=self._work, name="specd-inference", daemon=True)
        self._stopping = False
        self.engine: Any = None
        self.state = "starting"  # starting | loading | ready | unloaded | failed | stopped
        self.load_error: str | None = None
        self._last_used = time.monotonic()
        self._idle_work_due: float | None = None  # when the engine's idle work wants to run next (None: none)
        self._ready_event = threading.Event()  # set once the first load finished (either way)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._ready_event.wait(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Refuse new jobs, cancel queued ones, give the running one `grace` seconds, then cancel it."""
        self._stopping = True
        self._drain_queue("shutdown")
        self._put_stop()
        if self._thread.is_alive():
            self._thread.join(timeout=grace)
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel_with("shutdown")
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        if self._thread.is_alive():  # e.g. still loading a model, which cannot be interrupted
            log.warning("the inference worker is still busy; exiting without waiting for it")
        self._ready_event.set()

    @property
    def idle(self) -> bool:
        """No job queued or running. Counted by outcome rather than by queue and current job, which
        would both look empty in the instant the worker takes a job off the queue."""
        with self._lock:
            return self._unfinished == 0

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- submitting -------------------------------------------------------------------------

    def submit(self, request: Any, document_id: str | None = None,
               on_text: Callable[[str], None] | None = None) -> Job:
        if self._stopping:
            raise EngineUnavailable("the daemon is shutting down")
        job = Job(request, self._new_cancel_token(), document_id, on_text, time.monotonic())
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(retry_after=1) from None
            self._unfinished += 1
            job.future.add_done_callback(self._job_done)
            if document_id is not None:
                older = self._latest_by_document.get(document_id)
                self._latest_by_document[document_id] = job
                if older is not None and not older.future.done():
                    older.cancel_with("superseded")
            if not _warm_up(request):
                # A warm-up (an editor reading a document ahead, prefill_only) is speculative work: a completion
                # for any document goes first. The chunks it read stay cached for when the user goes back there.
                for other in self._latest_by_document.values():
                    if other is not job and _warm_up(other.request) and not other.future.done():
                        other.cancel_with("superseded")
        self.metrics.set_gauges(queue_depth=self._queue.qsize())
        return job

    async def run(self, request: Any, document_id: str | None = None,
                  on_text: Callable[[str], None] | None = None) -> Any:
        return await self.wait(self.submit(request, document_id, on_text))

    async def wait(self, job: Job) -> Any:
        """The job's GenerationResult. Cancelling the awaiting task (client disconnect) cancels the job;
        the per-request deadline starts here."""
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self.request_timeout, job.cancel_with, "deadline")
        # shield: cancelling our await must not cancel the concurrent future the worker will resolve.
        outcome = asyncio.wrap_future(job.future)
        try:
            return await asyncio.shield(outcome)
        except asyncio.CancelledError:
            job.cancel_with("disconnect")
            outcome.add_done_callback(_consume_outcome)
            raise
        finally:
            deadline.cancel()

    # ---- the worker -------------------------------------------------------------------------

    def _put_stop(self) -> None:
        while True:
            try:
                self._queue.put_nowait(_STOP)
                return
            except queue.Full:
                self._drain_queue("shutdown")

    def _drain_queue(self, reason: str) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is _STOP:
                continue
            job.cancel_with(reason)
            self._finish_cancelled(job, None)

    def _work(self) -> None:
        self._ensure_engine(first=True)
        self._ready_event.set()
        while True:
            job = self._next_job()
            if job is _STOP:
                break
            if job is None:  # idle for keep_alive seconds
                self._unload("idle for %gs (keep_alive)" % self.keep_alive)
                continue
            self.metrics.set_gauges(queue_depth=self._queue.qsize())
            self._run_job(job)
        self._unload("daemon stopping")
        self.state = "stopped"

    def _next_job(self) -> Any:
        """The next job, or None once the engine has been idle for keep_alive seconds. Runs the engine's idle work
        (Engine.run_idle_work) while waiting, once nothing was asked for IDLE_WORK_AFTER seconds."""
        while True:
            unload_at = self._last_used + self.keep_alive if self.engine is not None and self.keep_alive >= 0 else None
            idle_work_at = (max(self._idle_work_due, self._last_used + IDLE_WORK_AFTER)
                            if self.engine is not None and self._idle_work_due is not None else None)
            wake_at = min((t for t in (unload_at, idle_work_at) if t is not None), default=None)
            try:
                return self._queue.get(timeout=None if wake_at is None else max(0.0, wake_at - time.monotonic()))
            except queue.Empty:
                pass
            now = time.monotonic()
            if unload_at is not None and now >= unload_at:
                return None
            if idle_work_at is not None and now >= idle_work_at:
                self._run_idle_work()

    def _run_idle_work(self) -> None:
        try:
            wait = self.engine.run_idle_work(interrupted=lambda: not self._queue.empty())
        except Exception:  # noqa: BLE001 - idle work is an optimisation: requests must not suffer from it
            log.warning("the engine's idle work failed; it is not run again", exc_info=True)
            wait = None
        self._idle_work_due = None if wait is None else time.monotonic() + wait

    def _run_job(self, job: Job) -> None:
        with self._lock:
            self._current = job
        self.metrics.set_gauges(in_flight=1)
        try:
            if job.cancel.cancelled:
                self._finish_cancelled(job, None)
                return
            if not self._ensure_engine(first=False):
                job.future.set_exception(EngineUnavailable(f"the models failed to load: {self.load_error}"))
                return
            queue_s = time.monotonic() - job.enqueued_at
            try:
                request = job.request(self.engine) if callable(job.request) else job.request
                result = self.engine.generate(request, cancel=job.cancel, on_text=job.on_text)
            except Exception as e:  # noqa: BLE001 - the worker must survive any one request
                job.future.set_exception(e)
                return
            result.stats.queue_s = queue_s
            stats = result.stats.to_dict()
            stats["total_s"] = queue_s + float(stats.get("total_s") or 0.0)  # end to end for the histogram
            self.metrics.record_generation(stats, prefill_only=getattr(request, "prefill_only", False))
            if result.finish_reason == "cancelled":
                self._finish_cancelled(job, result)
            else:
                job.future.set_result(result)
        finally:
            self._last_used = time.monotonic()
            with self._lock:
                self._current = None
                if job.document_id is not None and self._latest_by_document.get(job.document_id) is job:
                    del self._latest_by_document[job.document_id]
            self.metrics.set_gauges(in_flight=0, queue_depth=self._queue.qsize())

    def _job_done(self, _future: concurrent.futures.Future) -> None:
        with self._lock:
            self._unfinished -= 1

    def _finish_cancelled(self, job: Job, result: Any) -> None:
        reason = job.cancel_reason or "cancelled"
        self.metrics.record_cancel(reason)
        if not job.future.done():
            job.future.set_exception(JobCancelled(reason, result))

    def _ensure_engine(self, first: bool) -> bool:
        if self.engine is not None:
            return True
        self.state = "loading"
        started = time.monotonic()
        try:
            self.engine = self._load_engine(self._progress)
        except Exception as e:  # noqa: BLE001 - reported to the user, the daemon decides what follows
            self.load_error = f"{type(e).__name__}: {e}"
            self.state = "failed"
            log.error("loading the models failed: %s", self.load_error, exc_info=not isinstance(e, ValueError))
            if first and self._on_load_failed is not None:
                self._on_load_failed(self.load_error)
            return False
        self.load_error = None
        self.state = "ready"
        self._last_used = time.monotonic()
        self._idle_work_due = self._last_used if getattr(self.engine, "idle_work", None) else None
        self.metrics.set_gauges(model_loaded=True)
        self._progress(f"models ready in {time.monotonic() - started:.1f}s")
        return True

    def _unload(self, why: str) -> None:
        if self.engine is None:
            return
        log.info("unloading the models: %s", why)
        try:
            self.engine.close()
        finally:
            self.engine = None
            self.metrics.set_gauges(model_loaded=False)
            if self.state == "ready":
                self.state = "unloaded"

    def engine_info(self) -> dict | None:
        engine = self.engine
        return engine.info() if engine is not None else None
