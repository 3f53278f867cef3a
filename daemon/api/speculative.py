"""The speculative-decoding knobs a request may carry through any door, checked against what is loaded, and
the report of what was used, which every door sends back (its `specd` field and `x-specd-*` headers).

Knobs (top level of a request body, or of whatever object a door hands in, e.g. Bedrock's
`additionalModelRequestFields`), spelt as the tools that send them spell them:

- `maxDraftTokens: N` (0..256): at most N tokens per draft; 0 is plain decoding;
- `speculativeDecoding: {enabled, maxDraftTokens}` (the Bedrock-style body): `enabled: false` is plain decoding;
- `draftingModel: "name"`: must name the drafter that is loaded (its configured `drafter` value, the folder's
  name, or the strategy such as `ngram`); anything else is a 400 naming the loaded one.

How a door uses this module:

    report = speculative.apply_body(ctx, body, params)   # BadRequest on wrong types or a wrong draftingModel;
                                                         # sets draft_tokens (knobs in a sub-object: parse + apply)
    shape = MyShape(rid, model, speculative=report)      # generate() adds report and headers to the answer
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from .schema import BadRequest, CompletionParams

MAX_DRAFT_TOKENS = 256


@dataclass
class Knobs:
    """The speculative-decoding knobs a request carries: `enabled` (speculativeDecoding.enabled; None: not said),
    `max_draft_tokens` (tokens per draft, 0..256; None: not said) and `drafting_model` (the drafter it names; None:
    any)."""

    enabled: bool | None = None
    max_draft_tokens: int | None = None
    drafting_model: str | None = None


def _count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer, got {type(value).__name__}", name)
    if not 0 <= value <= MAX_DRAFT_TOKENS:
        raise BadRequest(f"'{name}' must be between 0 and {MAX_DRAFT_TOKENS}, got {value}", name)
    return value


def parse(body: dict, where: str = "") -> Knobs:
    """The knobs in `body` (a request body or a door's sub-object, named `where` in error messages)."""
    knobs = Knobs(max_draft_tokens=_count(body.get("maxDraftTokens"), f"{where}maxDraftTokens"))
    nested = body.get("speculativeDecoding")
    if nested is not None:
        if not isinstance(nested, dict):
            raise BadRequest(f"'{where}speculativeDecoding' must be an object {{enabled, maxDraftTokens}}",
                             f"{where}speculativeDecoding")
        enabled = nested.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise BadRequest(f"'{where}speculativeDecoding.enabled' must be a boolean", f"{where}speculativeDecoding")
        knobs.enabled = enabled
        inner = _count(nested.get("maxDraftTokens"), f"{where}speculativeDecoding.maxDraftTokens")
        knobs.max_draft_tokens = inner if inner is not None else knobs.max_draft_tokens
    model = body.get("draftingModel")
    if model is not None and not isinstance(model, str):
        raise BadRequest(f"'{where}draftingModel' must be a string", f"{where}draftingModel")
    knobs.drafting_model = model
    return knobs


def loaded_drafter(ctx: Any) -> tuple[str | None, set[str]]:
    """The loaded drafter's name (None when there is none) and every name a request may use for it."""
    info = ctx.scheduler.engine_info() or {}
    settings = ctx.settings
    described = info.get("drafter") if info else None
    configured = info.get("drafter_model") if info else settings.drafter
    strategy = settings.draft_strategy
    if not info and strategy == "auto":
        described = "ngram+model" if settings.drafter else "ngram"
    elif not info and strategy != "none":
        described = strategy
    if not described and not configured:
        return None, set()
    names = {n for n in (described, configured) if n}
    if configured:
        names.add(PurePath(configured).name)
    if described:
        parts = described.split("+")  # "ngram+model:<path>", "layer_skip:2/4"
        names.update(parts)
        names.update(p.split(":", 1)[0] for p in parts if not p.startswith(("model:", "assistant:")))
    return configured or described, {n.lower() for n in names}


def apply_body(ctx: Any, body: dict, params: CompletionParams) -> dict:
    """`apply` for the knobs at the top level of a request body: what every door does."""
    return apply(ctx, parse(body), params)


def apply(ctx: Any, knobs: Knobs, params: CompletionParams) -> dict:
    """Checks `draftingModel`, sets `params.draft_tokens` from the knobs (an explicit `draft_tokens` wins) and
    returns the report of what the request will use."""
    name, names = loaded_drafter(ctx)
    if knobs.drafting_model is not None and knobs.drafting_model.lower() not in names:
        loaded = f"the loaded drafter is {name!r}" if name else "no drafter is loaded (draft_strategy 'none')"
        raise BadRequest(f"'draftingModel' {knobs.drafting_model!r} is not loaded here: {loaded}; send that "
                         "name or leave draftingModel out", "draftingModel")
    if params.draft_tokens is None:
        if knobs.enabled is False:
            params.draft_tokens = 0
        elif knobs.max_draft_tokens is not None:
            params.draft_tokens = knobs.max_draft_tokens
    enabled = name is not None and params.draft_tokens != 0
    limit = params.draft_tokens if params.draft_tokens is not None else ctx.settings.max_draft_tokens
    return {"enabled": enabled, "max_draft_tokens": limit if enabled else 0, "drafting_model": name if enabled else None}


COUNTED = ("prompt_tokens", "cached_tokens", "completion_tokens", "drafted_tokens", "accepted_tokens",
           "verifier_passes", "healed_tokens", "rewritten_tokens")  # Stats fields sent as x-specd-* headers
HEADER_NAMES = ("x-specd-speculative", "x-specd-max-draft-tokens", "x-specd-drafting-model",
                *("x-specd-" + name.replace("_", "-") for name in COUNTED), "x-specd-truncated")


def headers(report: dict | None, stats: dict | None = None) -> dict[str, str]:
    """`x-specd-*` response headers: the report (known before generating, so streams carry it too) and, for
    answers sent whole, the engine's accounting (the `specd` object's counts, engine/requests.py Stats) and
    `x-specd-truncated: deadline` on an answer request_timeout cut short (generation.cut_by_deadline)."""
    out: dict[str, str] = {}
    if report is not None:
        out["x-specd-speculative"] = "on" if report["enabled"] else "off"
        out["x-specd-max-draft-tokens"] = str(report["max_draft_tokens"])
        if report["drafting_model"]:
            out["x-specd-drafting-model"] = _header_text(report["drafting_model"])
    for name in COUNTED:
        if stats is not None and name in stats:
            out["x-specd-" + name.replace("_", "-")] = str(int(stats[name]))
    if stats is not None and stats.get("truncated"):
        out["x-specd-truncated"] = _header_text(str(stats["truncated"]))
    return out


def _header_text(value: str) -> str:
    """A header value is ASCII without control characters (a model path may be neither)."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)
