"""Prometheus text exposition for the daemon, without a client library.

Updated from the event loop and the worker thread, hence the lock.
"""

from __future__ import annotations

import math
import threading
from typing import Iterable

STAGES = ("queue", "prefill", "draft", "verify", "total")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    items = [f'{k}="{_escape(v)}"' for k, v in pairs]
    return "{" + ",".join(items) + "}" if items else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Histogram:
    """A Prometheus histogram's state: `counts[i]` the observations <= `buckets[i]` (already cumulative, as the text
    format's `_bucket{le=...}` lines), their `sum` and `count`. Not locked: Metrics holds the lock."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    """The daemon's counters, histograms and gauges, updated from the event loop and the worker thread (one lock), and
    `render()`: the Prometheus text exposition format (version 0.0.4) of GET /metrics. Latencies in seconds
    (`specd_stage_seconds`, LATENCY_BUCKETS), tokens as counted in the engine's Stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}  # (method, route, status) -> count
        self.door_requests: dict[tuple[str, int], int] = {}  # (API door, status) -> count
        self.stage_seconds = {stage: Histogram(LATENCY_BUCKETS) for stage in STAGES}
        self.tokens = {"prompt": 0, "cached": 0, "completion": 0, "drafted": 0, "accepted": 0}
        self.verifier_passes = 0
        self.cancelled: dict[str, int] = {}  # reason -> count
        self.completions = 0
        self.prefills = 0  # prefill_only requests: an editor warming a document's cache, no completion
        self.queue_depth = 0
        self.in_flight = 0
        self.model_loaded = 0

    def count_request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1

    def count_door(self, door: str, status: int) -> None:
        with self._lock:
            self.door_requests[(door, status)] = self.door_requests.get((door, status), 0) + 1

    def record_generation(self, stats: dict, prefill_only: bool = False) -> None:
        with self._lock:
            if prefill_only:
                self.prefills += 1
            else:
                self.completions += 1
            for stage in STAGES:
                value = stats.get(f"{stage}_s")
                if value is not None:
                    self.stage_seconds[stage].observe(float(value))
            for name in self.tokens:
                self.tokens[name] += int(stats.get(f"{name}_tokens") or 0)
            self.verifier_passes += int(stats.get("verifier_passes") or 0)

    def record_cancel(self, reason: str) -> None:
        with self._lock:
            self.cancelled[reason] = self.cancelled.get(reason, 0) + 1

    def set_gauges(self, *, queue_depth: int | None = None, in_flight: int | None = None,
                   model_loaded: bool | None = None) -> None:
        with self._lock:
            if queue_depth is not None:
                self.queue_depth = queue_depth
            if in_flight is not None:
                self.in_flight = in_flight
            if model_loaded is not None:
                self.model_loaded = int(model_loaded)

    def acceptance_rate(self) -> float | None:
        with self._lock:
            drafted, accepted = self.tokens["drafted"], self.tokens["accepted"]
        return accepted / drafted if drafted else None

    def requests_served(self) -> int:
        with self._lock:
            return self.completions

    def render(self) -> str:
        with self._lock:
            return "".join(self._render_locked())

    def _render_locked(self) -> Iterable[str]:
        yield "# HELP specd_http_requests_total HTTP requests by route and status.\n"
        yield "# TYPE specd_http_requests_total counter\n"
        for (method, route, status), count in sorted(self.requests.items()):
            labels = _labels([("method", method), ("route", route), ("status", str(status))])
            yield f"specd_http_requests_total{labels} {count}\n"

        yield "# HELP specd_door_requests_total HTTP requests by API door (openai, anthropic, native, ...) and status.\n"
        yield "# TYPE specd_door_requests_total counter\n"
        for (door, status), count in sorted(self.door_requests.items()):
            yield f"specd_door_requests_total{_labels([('door', door), ('status', str(status))])} {count}\n"

        yield "# HELP specd_stage_seconds Latency of each stage of a completion.\n"
        yield "# TYPE specd_stage_seconds histogram\n"
        for stage, hist in self.stage_seconds.items():
            # observe() bumps every bucket whose bound is >= the value, so counts are already cumulative.
            for bound, count in zip(hist.buckets, hist.counts):
                labels = _labels([("stage", stage), ("le", _number(bound))])
                yield f"specd_stage_seconds_bucket{labels} {count}\n"
            yield f"specd_stage_seconds_bucket{_labels([('stage', stage), ('le', '+Inf')])} {hist.count}\n"
            yield f"specd_stage_seconds_sum{_labels([('stage', stage)])} {_number(hist.sum)}\n"
            yield f"specd_stage_seconds_count{_labels([('stage', stage)])} {hist.count}\n"

        counters = [
            ("specd_completions_total", "Completions run by the engine.", self.completions),
            ("specd_prefill_only_total", "Prompts read into a document's cache without a completion (prefill_only).",
             self.prefills),
            ("specd_prompt_tokens_total", "Prompt tokens seen.", self.tokens["prompt"]),
            ("specd_cached_tokens_total", "Prompt tokens served from the KV cache.", self.tokens["cached"]),
            ("specd_completion_tokens_total", "Tokens generated.", self.tokens["completion"]),
            ("specd_drafted_tokens_total", "Tokens proposed by the drafter.", self.tokens["drafted"]),
            ("specd_accepted_tokens_total", "Drafted tokens the verifier accepted.", self.tokens["accepted"]),
            ("specd_verifier_passes_total", "Forward passes of the verifier.", self.verifier_passes),
        ]
        for name, help_text, value in counters:
            yield f"# HELP {name} {help_text}\n# TYPE {name} counter\n{name} {value}\n"

        yield "# HELP specd_cancelled_total Requests cancelled, by reason.\n"
        yield "# TYPE specd_cancelled_total counter\n"
        for reason, count in sorted(self.cancelled.items()):
            yield f"specd_cancelled_total{_labels([('reason', reason)])} {count}\n"

        gauges = [
            ("specd_queue_depth", "Requests waiting for the inference worker.", self.queue_depth),
            ("specd_in_flight", "Requests the worker is generating right now.", self.in_flight),
            ("specd_model_loaded", "1 while the models are in memory.", self.model_loaded),
        ]
        for name, help_text, value in gauges:
            yield f"# HELP {name} {help_text}\n# TYPE {name} gauge\n{name} {value}\n"
