"""Structured JSON output: schema-constrained speculative decoding against constrained plain decoding.

Each case is a chat prompt and a JSON schema (a product recommendation, customer data extracted from a paragraph,
a product catalog, nested objects, arrays with min/max items, enums, anyOf, bounded numbers, patterned strings,
required and optional fields). Every case runs, interleaved in one process and each from a cold cache, greedy:

- `plain`: constrained plain decoding (`draft_tokens: 0`: the same loop and masks, no drafts);
- `drafter`: speculative with the engine's drafter only (`forced_drafts: false`);
- `forced`: speculative with the drafter and the tokens the grammar forces as free drafts (the default).

    SPECD_HOME=/tmp/sh python scripts/bench_structured.py --limit 8 --repeats 2 --json structured.json

`valid_rate`: answers that parse and validate (jsonschema); `identical_rate`: speculative answers equal to plain
token for token; `tokens_per_pass`: answer tokens per decoding verifier pass (prefill passes left out);
`speedup_vs_constrained_plain`: plain's decoding time over the side's (prefill, the same for all sides, left
out; `end_to_end_speedup` keeps it), the median over repeats per case, then the geometric mean over cases.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import jsonschema
import torch

from specd.daemon.engine.loop import PREFILL_CHUNK, EngineConfig, GenerationRequest
from specd.daemon.models.loading import load_engine

SIDES = {"plain": {"draft_tokens": 0}, "drafter": {"forced_drafts": False}, "forced": {}}


def _string(max_length: int = 40, **extra) -> dict:
    return {"type": "string", "maxLength": max_length, **extra}


def _object(properties: dict, optional: tuple = ()) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "required": [name for name in properties if name not in optional]}


CASES = [
    ("product recommendation",
     "I need a lightweight laptop for travel and programming, under 1500 dollars. Recommend one product.",
     _object({"product_name": _string(), "category": {"enum": ["laptop", "tablet", "desktop", "accessory"]},
              "price_usd": {"type": "number", "minimum": 0, "maximum": 10000},
              "rating": {"type": "integer", "minimum": 1, "maximum": 5},
              "reasons": {"type": "array", "items": _string(60), "minItems": 1, "maxItems": 3}})),
    ("customer extraction",
     "Extract the customer from this paragraph: Maria Gonzalez from Seville, Spain, wrote to us on May 3rd. She "
     "has been a customer since 2017, her email is maria.gonzalez@example.com and her phone number is "
     "+34 612 345 678. She holds a gold membership.",
     _object({"first_name": _string(), "last_name": _string(),
              "email": _string(60, pattern=r"^[a-z0-9._]+@[a-z0-9.]+\.[a-z]{2,}$"), "phone": _string(20),
              "city": _string(), "country": _string(), "customer_since": {"type": "integer", "minimum": 1990,
                                                                          "maximum": 2030},
              "membership": {"enum": ["none", "silver", "gold", "platinum"]}})),
    ("product catalog",
     "Write a small catalog of three products for an online tea shop.",
     _object({"store": _string(), "products": {"type": "array", "minItems": 3, "maxItems": 3, "items": _object({
         "sku": _string(pattern=r"^[A-Z]{3}-[0-9]{4}$"), "name": _string(), "price": {"type": "number",
                                                                                        "minimum": 0.5, "maximum": 500},
         "in_stock": {"type": "boolean"}, "tags": {"type": "array", "items": _string(15), "maxItems": 3}})}})),
    ("nested user profile",
     "Create a user profile for a software engineer who lives in Berlin.",
     _object({"user": _object({"name": _string(), "age": {"type": "integer", "minimum": 18, "maximum": 99},
                               "address": _object({"street": _string(), "city": _string(), "zip": _string(10)})}),
              "skills": {"type": "array", "items": _string(20), "minItems": 2, "maxItems": 4},
              "active": {"type": "boolean"}})),
    ("support ticket",
     "A customer says the mobile app crashes every time they open the settings page. File a support ticket.",
     _object({"title": _string(60), "priority": {"enum": ["low", "medium", "high", "urgent"]},
              "status": {"enum": ["open", "in progress", "resolved"]}, "component": _string(),
              "assignee": _string(), "summary": _string(120)}, optional=("assignee",))),
    ("payment (anyOf)",
     "The customer pays with a Visa card ending in 4242 that expires in 12/27. Describe the payment method.",
     _object({"method": {"anyOf": [
         _object({"type": {"const": "card"}, "brand": {"enum": ["visa", "mastercard", "amex"]},
                  "last4": _string(4, pattern=r"^[0-9]{4}$"), "expiry": _string(5, pattern=r"^[0-9]{2}/[0-9]{2}$")}),
         _object({"type": {"const": "bank_transfer"}, "iban": _string(34)})]},
              "amount": {"type": "number", "minimum": 0, "maximum": 100000},
              "currency": {"enum": ["USD", "EUR", "GBP"]}})),
    ("meeting event",
     "Schedule a project kickoff meeting on 2025-03-14 with Alice (organizer), Bob and Carol (attendees).",
     _object({"title": _string(), "date": _string(10, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
              "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 480},
              "people": {"type": "array", "minItems": 1, "maxItems": 4, "items": _object({
                  "name": _string(), "role": {"enum": ["organizer", "attendee", "optional"]}})}})),
    ("weather report",
     "Report today's weather in Oslo: cold, light snow, a north wind.",
     _object({"city": _string(), "temperature_c": {"type": "number", "minimum": -60, "maximum": 60},
              "humidity_percent": {"type": "integer", "minimum": 0, "maximum": 100},
              "conditions": {"enum": ["sunny", "cloudy", "rain", "snow", "fog"]},
              "wind": _object({"direction": {"enum": ["north", "east", "south", "west"]},
                               "speed_kmh": {"type": "integer", "minimum": 0, "maximum": 300}}),
              "advice": _string(80)}, optional=("advice",))),
    ("book review",
     "Review the novel 'The Left Hand of Darkness' by Ursula K. Le Guin.",
     _object({"title": _string(), "author": _string(), "year": {"type": "integer", "minimum": 1800,
                                                                  "maximum": 2030},
              "stars": {"type": "integer", "minimum": 1, "maximum": 5}, "genres": {
                  "type": "array", "items": {"enum": ["science fiction", "fantasy", "literary", "mystery"]},
                  "minItems": 1, "maxItems": 2}, "verdict": _string(100)})),
    ("api error",
     "Describe, as an API error object, a request that failed because the 'email' field was missing.",
     _object({"error": _object({"code": {"type": "integer", "minimum": 400, "maximum": 599},
                                "type": {"enum": ["invalid_request", "authentication", "not_found", "server"]},
                                "message": _string(80), "field": _string(20)}, optional=("field",))})),
]


def run_side(engine, prompt: str, schema: dict, side: str, max_tokens: int) -> dict:
    engine.pool.clear()  # a cold cache: no side copies an earlier answer from the document's history
    result = engine.generate(GenerationRequest(prompt=prompt, max_tokens=max_tokens, json_schema=schema,
                                               token_healing=False, **SIDES[side]))
    stats = result.stats
    prefill_passes = math.ceil((stats.prompt_tokens - stats.cached_tokens) / PREFILL_CHUNK)
    try:
        jsonschema.validate(json.loads(result.text), schema)
        valid = True
    except (ValueError, jsonschema.ValidationError):
        valid = False
    return {"tokens": result.token_ids, "text": result.text, "valid": valid, "finish_reason": result.finish_reason,
            "decode_passes": stats.verifier_passes - prefill_passes, "decode_s": stats.total_s - stats.prefill_s,
            "total_s": stats.total_s, "forced_tokens": stats.forced_tokens, "drafted": stats.drafted_tokens,
            "accepted": stats.accepted_tokens}


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def summarize(results: list[dict]) -> dict:
    summary = {}
    for side in SIDES:
        rows = [r[side] for r in results]
        tokens = sum(len(r["tokens"]) for r in rows)
        entry = {"valid_rate": sum(r["valid"] for r in rows) / len(rows),
                 "tokens_per_pass": tokens / max(1, sum(r["decode_passes"] for r in rows)),
                 "forced_tokens": sum(r["forced_tokens"] for r in rows)}
        if side != "plain":
            entry["identical_rate"] = sum(r[side]["tokens"] == r["plain"]["tokens"] for r in results) / len(results)
            entry["speedup_vs_constrained_plain"] = geomean([r["plain"]["decode_s"] / r[side]["decode_s"]
                                                             for r in results])
            entry["end_to_end_speedup"] = geomean([r["plain"]["total_s"] / r[side]["total_s"] for r in results])
        summary[side] = entry
    return summary


def measure(engine, name: str, question: str, schema: dict, repeats: int, max_tokens: int) -> dict:
    """Every side `repeats` times, interleaved; the medians of the times (answers are the same each time)."""
    prompt = engine.apply_chat_template([{"role": "user", "content": question + " Answer in JSON."}])
    runs = {side: [] for side in SIDES}
    for _ in range(repeats):
        for side in SIDES:
            runs[side].append(run_side(engine, prompt, schema, side, max_tokens))
    result = {"case": name}
    for side, side_runs in runs.items():
        first = dict(side_runs[0])
        first["decode_s"] = statistics.median(r["decode_s"] for r in side_runs)
        first["total_s"] = statistics.median(r["total_s"] for r in side_runs)
        result[side] = first
    return result


# The engine's settings a run may change (--verifier, --drafter, --draft-strategy, --backend: auto | torch |
# llamacpp as the daemon's setting, --threads), with their defaults.
ENGINE_OPTIONS = {"verifier": EngineConfig.verifier, "drafter": None, "draft_strategy": EngineConfig.draft_strategy,
                  "backend": EngineConfig.backend, "threads": 2}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in ENGINE_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), default=default, type=type(default) if default else None)
    p.add_argument("--limit", type=int, default=len(CASES), help=f"cases to run (at most {len(CASES)})")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=400)
    p.add_argument("--json", dest="json_out", default=None)
    return p.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv=None) -> dict:
    args = parse_args(argv)
    engine = load_engine(EngineConfig(**{name: getattr(args, name) for name in ENGINE_OPTIONS}), progress=log)
    results = []
    for name, question, schema in CASES[: args.limit]:
        result = measure(engine, name, question, schema, args.repeats, args.max_tokens)
        results.append(result)
        plain = result["plain"]
        log(f"{name}: {len(plain['tokens'])} tokens, valid {plain['valid']}, forced {result['forced']['forced_tokens']}"
            f", speedup drafter {plain['decode_s'] / result['drafter']['decode_s']:.2f}x forced "
            f"{plain['decode_s'] / result['forced']['decode_s']:.2f}x; {plain['text'][:70]!r}")
    summary = summarize(results)
    print(f"{'side':<9}{'valid':>7}{'identical':>11}{'tok/pass':>10}{'speedup':>9}{'end-to-end':>12}")
    for side, entry in summary.items():
        print(f"{side:<9}{entry['valid_rate']:>7.2f}{entry.get('identical_rate', 1.0):>11.2f}"
              f"{entry['tokens_per_pass']:>10.2f}{entry.get('speedup_vs_constrained_plain', 1.0):>8.2f}x"
              f"{entry.get('end_to_end_speedup', 1.0):>11.2f}x")
    if args.json_out:
        info = engine.info()
        Path(args.json_out).write_text(json.dumps({
            "summary": summary,
            "cases": [{"case": r["case"], **{side: {k: v for k, v in r[side].items() if k != "tokens"}
                                             for side in SIDES}} for r in results],
            "environment": {"verifier": args.verifier, "backend": info["backend"], "drafter": info["drafter"],
                            "device": info["device"], "torch": torch.__version__, "threads": torch.get_num_threads(),
                            "repeats": args.repeats, "max_tokens": args.max_tokens}}, indent=1))
    return summary


if __name__ == "__main__":
    main()
