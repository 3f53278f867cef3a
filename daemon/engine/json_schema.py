"""Walking a JSON Schema's subschemas, telling schemas from the JSON values and names a schema also holds.

In `{"properties": {"default": {...}}, "default": 3}` the first `default` names a property whose value is a
schema and the second is a value: a walk that skipped every key called `default` would miss the schema, one that
entered every value would read data as schemas. Keywords follow JSON Schema 2020-12 (json-schema.org, "Core" and
"Validation"), with draft 7's `definitions`.
"""

from __future__ import annotations

from typing import Any, Callable

# Keywords whose value is an object of schemas keyed by names (property names, definition names): the names are
# not keywords.
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose value is JSON data, never a schema.
DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required", "dependentRequired", "$comment",
                           "description", "title", "format", "pattern", "type", "$ref", "$id", "$anchor",
                           "$schema", "propertyOrdering"})


def map_schema(schema: Any, visit: Callable[[dict, str], dict], path: str = "") -> Any:
    """`schema` rebuilt with `visit(node, pointer)` applied to every schema object in it, outermost first
    (`pointer`: the JSON pointer to `node`, "" for the root, "/properties/a" ...); `visit` returns the node to use
    (the same dict, or a changed copy) or raises. Names under SCHEMA_MAPS keywords and the values of
    DATA_KEYWORDS are kept as they are; every other object or array value is walked as schemas (`items`, `anyOf`,
    `not`, `additionalProperties`, ...). Booleans and other values are schemas or data that hold none."""
    if not isinstance(schema, dict):
        return schema
    node = visit(schema, path)
    rebuilt = {}
    for key, value in node.items():
        where = f"{path}/{_escaped(key)}"
        if key in DATA_KEYWORDS:
            rebuilt[key] = value
        elif key in SCHEMA_MAPS and isinstance(value, dict):
            rebuilt[key] = {name: map_schema(sub, visit, f"{where}/{_escaped(name)}") for name, sub in value.items()}
        elif isinstance(value, list):
            rebuilt[key] = [map_schema(item, visit, f"{where}/{i}") for i, item in enumerate(value)]
        else:
            rebuilt[key] = map_schema(value, visit, where)
    return rebuilt


def _escaped(name: str) -> str:
    """A name as a JSON pointer's reference token (RFC 6901: `~` as ~0, `/` as ~1)."""
    return str(name).replace("~", "~0").replace("/", "~1")


OPEN_KEYWORDS = ("additionalProperties", "patternProperties", "unevaluatedProperties")


def closed_objects(schema: Any) -> Any:
    """`schema` with `"additionalProperties": false` on every object schema that lists `properties` and says
    nothing of other keys (none of OPEN_KEYWORDS), so an answer holds the declared properties only: the default of
    the grammars vLLM, SGLang and llama.cpp constrain with (xgrammar's strict mode; llama.cpp's
    json-schema-to-grammar), and what OpenAI's and Anthropic's strict schemas require to be written out. A schema
    that combines object schemas with `allOf` stays as it is (closing each part would forbid the others'
    properties); `{"type": "object"}` without `properties` stays any object."""
    if _uses_all_of(schema):
        return schema

    def close(node: dict, path: str) -> dict:
        if isinstance(node.get("properties"), dict) and not any(key in node for key in OPEN_KEYWORDS):
            return {**node, "additionalProperties": False}
        return node

    return map_schema(schema, close)


def _uses_all_of(schema: Any) -> bool:
    combined = False

    def look(node: dict, path: str) -> dict:
        nonlocal combined
        combined = combined or (isinstance(node.get("allOf"), list) and len(node["allOf"]) > 1)
        return node

    map_schema(schema, look)
    return combined
