"""The `specd` settings section an editor sends (initializationOptions, workspace/configuration).

Keys are camelCase as editors write them (`debounceMs`); snake_case is accepted too. A bad value is
reported and that one key keeps its previous value, so one typo never switches completions off. Keys the
editor side owns (VS Code's `serverPath`, `trace.server`) are part of the same section and are skipped.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

MODES = ("auto", "line", "block")
MAX_DRAFT_TOKENS = 256  # the most the daemon's routes take (daemon/api/schema.py)
# Settings of the `specd` section that the editor's side reads, not the server: the VS Code extension's
# `specd.serverPath` and vscode-languageclient's `specd.trace.server` (sent as {"trace": {"server": ...}}).
CLIENT_KEYS = frozenset({"serverPath", "server_path", "trace"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the settings an editor sent. `unknown_key`: a key specd does not know (worth a log
    line; perhaps a newer editor config); otherwise a known key with a bad value (worth telling the user)."""

    message: str
    unknown_key: bool = False


@dataclass(frozen=True)
class Settings:
    """The `specd` settings section in force: `enable`, `debounce_ms` (milliseconds), `max_tokens` (tokens, >= 1),
    `draft_tokens` (None: the daemon's default, 0: plain decoding, at most 256), `mode` ("auto": a line inside a line,
    a block on an empty line; "line"; "block"), `excluded_languages` (LSP language ids), `prefix_chars`,
    `suffix_chars` and `extra_context_chars` (characters sent before and after the cursor and of other open
    documents), `temperature` (0 to 2) and `warm_up` (`enable` and `warm_up` read null as false: Emacs's nil).
    `allows(language_id)`: whether completions are on for that language."""

    enable: bool = True
    debounce_ms: int = 75
    max_tokens: int = 64
    draft_tokens: int | None = None  # None: the daemon's default; 0: plain decoding
    mode: str = "auto"  # auto: a line inside a line, a block on an empty line
    excluded_languages: tuple[str, ...] = ()
    prefix_chars: int = 6000
    suffix_chars: int = 2000
    extra_context_chars: int = 2000
    temperature: float = 0.0
    warm_up: bool = True  # read the prompt where the cursor rests (the editor's hint) before the user types

    def allows(self, language_id: str | None) -> bool:
        return self.enable and (language_id or "") not in self.excluded_languages


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _check(name: str, value: Any) -> Any:
    """The value converted to the field's type, or ValueError with a message for the user."""
    if name in ("enable", "warm_up"):
        if value is None:  # eglot sends Emacs's nil (its false is :json-false) as null
            return False
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if name == "mode":
        if value not in MODES:
            raise ValueError(f"must be one of {', '.join(MODES)}")
        return value
    if name == "excluded_languages":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of language ids")
        return tuple(value)
    if name == "temperature":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
            raise ValueError("must be a number from 0 to 2")
        return float(value)
    if name == "draft_tokens" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    lowest = 1 if name == "max_tokens" else 0
    if value < lowest:
        raise ValueError(f"must be at least {lowest}")
    if name == "draft_tokens" and value > MAX_DRAFT_TOKENS:
        raise ValueError(f"must be at most {MAX_DRAFT_TOKENS}")
    return value


FIELDS = {f.name for f in dataclasses.fields(Settings)}


def _shown(value: Any) -> str:
    """A value as the editor's settings write it (JSON: null, "lines", [..]), not as Python does."""
    try:
        return json.dumps(list(value) if isinstance(value, tuple) else value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def is_setting(key: str) -> bool:
    """Whether `key` (camelCase or snake_case) names a Settings field."""
    return _snake(key) in FIELDS


def merge(base: Settings, raw: Any) -> tuple[Settings, list[Problem]]:
    """`base` updated with the keys of `raw` (a dict, or None for no change); returns the problems found,
    one each. Keys in CLIENT_KEYS are skipped without a problem."""
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, [Problem(f"specd settings must be an object, got {type(raw).__name__}; ignored")]
    changes: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        if key in CLIENT_KEYS:
            continue
        name = _snake(key)
        if name not in FIELDS:
            problems.append(Problem(f"unknown specd setting {key!r}; ignored", unknown_key=True))
            continue
        try:
            changes[name] = _check(name, value)
        except ValueError as exc:
            problems.append(Problem(f"specd setting {_camel(name)}={_shown(value)} {exc}; "
                                    f"kept {_shown(getattr(base, name))}"))
    return dataclasses.replace(base, **changes), problems


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as the editor writes them (for specd.status)."""
    out = {_camel(k): v for k, v in dataclasses.asdict(settings).items()}
    out["excludedLanguages"] = list(settings.excluded_languages)
    return out
