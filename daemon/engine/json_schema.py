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
