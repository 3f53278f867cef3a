"""The daemon's settings: defaults < settings.json < SPECD_* environment < command-line flags.

settings.json is read, never written: a file the user edits by hand is theirs. It may contain
// and /* */ comments and trailing commas, like editors' settings; a malformed file is reported with
its line and column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from specd.daemon.config import jsonc
from specd.daemon.config.upstream import UpstreamSettingError, check_upstream, parse_upstream_text

ENV_PREFIX = "SPECD_"


class SettingsError(ValueError):
    """A setting could not be read; the message names where and why."""


@dataclass(frozen=True)
class Settings:
    """The daemon's settings, one field per setting, defaults here; `load_settings` layers settings.json, SPECD_*
    environment variables and flags over them, checked against `_SCHEMA`. The model and engine fields are EngineConfig's
    (`engine_kwargs`); `host` and `port` are where the API listens, `keep_alive` and `request_timeout` are seconds,
    `queue_size` counts jobs, `upstream` is config/upstream.py's object."""

    verifier: str = "smollm2-135m"
    drafter: str | None = None
    draft_strategy: str = "auto"
    max_draft_tokens: int = 8
    device: str = "auto"
    dtype: str = "auto"
    max_context: int = 4096
    cache_slots: int = 4
    threads: int = 0  # CPU threads for torch or llama.cpp steps; 0 = half the cores (llama.cpp: auto, as batch_threads)
    batch_threads: int = 0  # llama.cpp: CPU threads for passes over several tokens; 0 = auto (idle cores, else threads)
    backend: str = "auto"  # auto | torch | llamacpp: what runs the verifier
    host: str = "127.0.0.1"
    port: int = 7411
    keep_alive: float = -1  # seconds a model stays loaded while unused; -1 = forever, 0 = unload at once
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)  # Host names accepted besides loopback ones
    log_prompts: bool = False
    queue_size: int = 16
    request_timeout: float = 30.0
    upstream: dict | None = None  # an OpenAI-compatible server doing the model work (config/upstream.py)

    def engine_kwargs(self) -> dict[str, Any]:
        """The subset that EngineConfig takes."""
        names = ("verifier", "drafter", "draft_strategy", "max_draft_tokens", "device", "dtype",
                 "max_context", "cache_slots", "threads", "batch_threads", "backend")
        return {name: getattr(self, name) for name in names}


DRAFT_STRATEGIES = ("auto", "ngram", "model", "layer_skip", "assistant", "quantized", "none")
BACKENDS = ("auto", "torch", "llamacpp")
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")  # models/loading.py: resolve_dtype
DEVICE_PATTERN = re.compile(r"auto|(cpu|cuda|mps|xpu)(:\d+)?")  # torch's device names of the runners' devices
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")  # a host name's label (RFC 1123, section 2.1)

# name -> (kind, extra check or None). Kinds drive both JSON validation and parsing of env/flag strings.
_SCHEMA: dict[str, tuple[str, Any]] = {
    "verifier": ("str", None),
    "drafter": ("optional_str", None),
    "draft_strategy": ("choice", DRAFT_STRATEGIES),
    "max_draft_tokens": ("int", (0, 64)),
    "device": ("device", None),
    "dtype": ("choice", DTYPES),
    "max_context": ("int", (16, 1 << 20)),
    "cache_slots": ("int", (1, 1024)),
    "threads": ("int", (0, 1024)),
    "batch_threads": ("int", (0, 1024)),
    "backend": ("choice", BACKENDS),
    "host": ("host", None),
    "port": ("int", (0, 65535)),
    "keep_alive": ("number", (-1, 31_536_000)),  # a year at most (-1 is forever)
    "allowed_origins": ("str_list", None),
    "allowed_hosts": ("str_list", None),
    "log_prompts": ("bool", None),
    "queue_size": ("int", (1, 100000)),
    "request_timeout": ("number", (0.001, 86_400)),  # a day at most
    "upstream": ("upstream", None),
}
assert set(_SCHEMA) == {f.name for f in dataclasses.fields(Settings)}

SETTING_NAMES = tuple(_SCHEMA)


def setting_kind(name: str) -> str:
    """The kind `_SCHEMA` gives setting `name` ("str", "optional_str", "choice", "device", "host", "bool", "str_list",
    "upstream", "int" or "number"), which the CLI's flags are built from. KeyError for an unknown name."""
    return _SCHEMA[name][0]


def load_settings(
    settings_file: Path,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the four layers. `flags` holds only the flags the user gave (None values are ignored);
    flag values may be strings (parsed like env values) or already typed."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    values.update(read_settings_file(settings_file))
    for name in SETTING_NAMES:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = parse_text_value(name, raw, f"environment variable {ENV_PREFIX}{name.upper()}")
    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        where = f"--{name.replace('_', '-')}"
        if isinstance(raw, str):
            values[name] = parse_text_value(name, raw, where)
        else:
            values[name] = check_value(name, raw, where)
    return Settings(**values)


def settings_record(settings: Settings) -> dict[str, Any]:
    """Every setting as a JSON value, for the state file (`specd status --json`) and comparing with it. The
    upstream's `key` becomes a fingerprint ("sha256:" and 12 hex digits): a changed key still differs, and the key
    itself is not printed."""
    record = dataclasses.asdict(settings)
    if (record["upstream"] or {}).get("key") is not None:
        record["upstream"] = _fingerprinted(record["upstream"])
    return record


def _fingerprinted(upstream: dict) -> dict:
    key = upstream["key"]
    return {**upstream, "key": "sha256:" + hashlib.sha256(str(key).encode()).hexdigest()[:12]}


SPAWN_KEY_ENV = "SPECD_SPAWN_UPSTREAM_KEY"  # how `specd start` hands `specd serve` an --upstream key (below)


def _upstream_object(flags: list[str], i: int) -> dict | None:
    """The JSON object after an `--upstream` at `flags[i]`, or None (a bare URL, or no --upstream there)."""
    if flags[i] != "--upstream" or i + 1 >= len(flags):
        return None
    try:
        value = json.loads(flags[i + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def without_flag_key(flags: list[str]) -> tuple[list[str], str | None]:
    """`specd serve`'s flags with an `--upstream` object's `key` taken out, and that key (None: there was none): a
    spawned daemon gets the key in its environment (SPAWN_KEY_ENV), which other local users cannot read, rather
    than on its command line, which `ps` shows them."""
    flags = list(flags)
    for i in range(len(flags)):
        upstream = _upstream_object(flags, i)
        if upstream is not None and upstream.get("key") is not None:
            key = str(upstream.pop("key"))
            flags[i + 1] = json.dumps(upstream)
            return flags, key
    return flags, None


def with_flag_key(flags: list[str], key: str) -> list[str]:
    """without_flag_key undone: `key` back in the `--upstream` object (as `specd serve` reads it, and its state
    file records the flags for `specd restart`)."""
    flags = list(flags)
    for i in range(len(flags)):
        upstream = _upstream_object(flags, i)
        if upstream is not None:
            flags[i + 1] = json.dumps({**upstream, "key": key})
    return flags


def shown_flags(flags: list[str]) -> list[str]:
    """Start flags as `specd status` prints them: an `--upstream` object's `key` as settings_record's fingerprint."""
    shown = list(flags)
    for i in range(len(shown)):
        upstream = _upstream_object(shown, i)
        if upstream is not None and upstream.get("key") is not None:
            shown[i + 1] = json.dumps(_fingerprinted(upstream))
    return shown


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings in the settings.json at `path` (JSONC), each checked (`check_value`), relative model paths made
    absolute against its folder; {} when the file is missing, empty or only comments. Raises SettingsError naming the
    file (and the line of a bad setting) when it cannot be read, is not UTF-8 or JSONC, its top level is not an object,
    or a setting is unknown or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as e:
        raise SettingsError(f"{path}: not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    try:
        root = jsonc.parse(text)
    except jsonc.JSONCError as e:
        raise SettingsError(f"{path}: {e}") from None
    except RecursionError:
        raise SettingsError(f"{path}: nested too deeply to be settings") from None
    except ValueError as e:  # an integer of more digits than Python converts (sys.set_int_max_str_digits)
        raise SettingsError(f"{path}: not readable as settings: {e}") from None
    if root is None:  # empty, or comments only
        return {}
    if not isinstance(root.value, dict):
        raise SettingsError(f"{path}: expected a JSON object at the top level, got {_json_type(root.value)}")
    repeated = _repeated_key(root)
    if repeated is not None:  # JSON parsers keep the last silently: an edit of the first would change nothing
        first, again = repeated
        raise SettingsError(f"{path}: line {_line(text, again.key_start)}: {again.key!r} is set again (first at "
                            f"line {_line(text, first.key_start)}); keep one of them")
    out = {}
    for member in root.members:
        name, where = member.key, f"{path}: line {_line(text, member.key_start)}"
        if name not in _SCHEMA:
            raise SettingsError(f"{where}: unknown setting {name!r}; known settings: {', '.join(SETTING_NAMES)}")
        out[name] = check_value(name, member.value.value, f"{where}: {name!r}")
        if name in MODEL_SETTINGS:
            out[name] = local_model_path(out[name], path.parent)
    return out


MODEL_SETTINGS = ("verifier", "drafter")


def local_model_path(spec: str | None, base: Path) -> str | None:
    """A model setting with a relative file or folder path ("./m.gguf", "../models/x", "models/m.gguf", or
    "models/qwen" where `base` has it) made absolute against `base` (settings.json's folder for the file, the
    working directory for a flag), so that it names the same model whichever directory the daemon is started
    from; anything else (an embedded name, a hub id, an absolute or ~ path) as it is."""
    if not spec or Path(spec).is_absolute() or spec.startswith("~"):
        return spec
    if spec.startswith(("./", "../")) or spec in (".", "..") or Path(spec).suffix == ".gguf" \
            or (base / spec).exists():  # a folder there wins over a hub id, as models/loading.py reads it
        return str((base / spec).resolve())
    return spec


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _repeated_key(node: jsonc.Node) -> tuple[jsonc.Member, jsonc.Member] | None:
    """The first member of an object in `node` (itself or nested) whose key an earlier member of the same object
    has, with that earlier member; None when no key repeats."""
    seen: dict[str, jsonc.Member] = {}
    for member in node.members:
        if member.key in seen:
            return seen[member.key], member
        seen[member.key] = member
    for member in node.members:
        found = _repeated_key(member.value)
        if found is not None:
            return found
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def check_value(name: str, value: Any, where: str) -> Any:
    """Validate an already-typed value (from JSON or a typed flag)."""
    kind, extra = _SCHEMA[name]

    def bad(expected: str) -> SettingsError:
        shown = "null" if value is None else f"{_json_type(value)} {json.dumps(value)}"
        return SettingsError(f"{where}: expected {expected}, got {shown}")

    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
    elif kind == "optional_str":
        if value is not None and (not isinstance(value, str) or not value):
            raise bad("a non-empty string or null")
    elif kind == "choice":
        if value not in extra:
            raise bad("one of " + ", ".join(extra))
    elif kind == "device":
        if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
            raise bad("auto, cpu, cuda, cuda:N, mps or xpu")
    elif kind == "host":
        if not isinstance(value, str) or not is_host_name(value):
            raise bad("an IP address or a host name (such as 127.0.0.1, ::1, 0.0.0.0 or localhost)")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        value = list(value)
    elif kind == "upstream":
        try:
            value = check_upstream(value)
        except UpstreamSettingError as e:
            raise SettingsError(f"{where}: {e}") from None
    elif kind in ("int", "number"):
        ok_type = (int,) if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value):
            raise bad("an integer" if kind == "int" else "a finite number")
        low, high = extra
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise SettingsError(f"{where}: expected a value {span}, got {value}")
    return value


def parse_text_value(name: str, raw: str, where: str) -> Any:
    """Parse an environment variable or flag string into the setting's type, then validate it."""
    kind, _ = _SCHEMA[name]
    text = raw.strip()
    value: Any = text
    if kind == "optional_str" and text.lower() in ("", "none", "null"):
        value = None
    elif kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            value = True
        elif lowered in ("0", "false", "no", "off"):
            value = False
        else:
            raise SettingsError(f"{where}: expected true or false, got {raw!r}")
    elif kind in ("int", "number"):
        try:
            value = int(text)
        except ValueError:
            if kind == "int":
                raise SettingsError(f"{where}: expected an integer, got {raw!r}") from None
            try:
                value = float(text)
            except ValueError:
                raise SettingsError(f"{where}: expected a number, got {raw!r}") from None
    elif kind == "upstream":
        try:
            value = parse_upstream_text(text)
        except UpstreamSettingError as e:
            raise SettingsError(f"{where}: {e}") from None
    elif kind == "str_list":
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise SettingsError(f"{where}: column {e.colno}: {e.msg}") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    return check_value(name, value, where)


def is_host_name(host: str) -> bool:
    """Whether `host` is an IP address, a syntactically valid host name (RFC 1123 labels, a final dot allowed) or
    "" (every interface, as asyncio binds it): what a socket can be bound to, before any name lookup."""
    if host == "":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return 0 < len(host) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)


def is_loopback_host(host: str) -> bool:
    """Loopback IP literals and `localhost` only. Never a pattern such as "127.*": a DNS-rebinding page
    could be served from a domain named 127.attacker.example."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
