"""The layers of `daemon/` import only downwards, and the language server only talks HTTP to the daemon.

Layers, bottom up: config, engine, models, service, api, process, cli (README, Development). Imports are read
from the source with `ast`, including those inside functions, so a lazy import cannot hide an upward edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["config", "engine", "models", "service", "api", "process", "cli"]
LAYER_RANK = {name: rank for rank, name in enumerate(LAYERS)}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = {"daemon": "specd.daemon", "lsp": "specd.lsp"}[parts[0]]
    rest = [p for p in parts[1:] if p != "__init__"]
    return ".".join([package, *rest])


def _imports(path: Path) -> set[str]:
    """Every specd module `path` imports, as absolute names."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return {f for f in found if f.startswith("specd.")}


def _rank(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["specd", "daemon"]:
        return None
    if len(parts) == 2 or parts[2] not in LAYER_RANK:
        # daemon/discovery.py: the public helper that finds or starts the daemon, beside the process layer
        return LAYER_RANK["process"] if len(parts) > 2 and parts[2] == "discovery" else None
    return LAYER_RANK[parts[2]]


def test_daemon_layers_import_only_downwards():
    upward = []
    for path in sorted((ROOT / "daemon").rglob("*.py")):
        own = _rank(_module_name(path))
        if own is None:
            continue
        for target in _imports(path):
            rank = _rank(target)
            if rank is not None and rank > own:
                upward.append(f"{path.relative_to(ROOT)} imports {target}")
    assert upward == []


def test_every_daemon_module_is_in_a_layer():
    loose = [p.name for p in (ROOT / "daemon").glob("*.py") if p.name not in ("__init__.py", "discovery.py")]
    assert loose == [], "put new modules in the layer they belong to (README, Development)"
    assert sorted(p.name for p in (ROOT / "daemon").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_language_server_reaches_the_daemon_only_through_discovery():
    used = set()
    for path in (ROOT / "lsp").rglob("*.py"):
        used |= {m for m in _imports(path) if m.startswith("specd.daemon")}
    assert used <= {"specd.daemon", "specd.daemon.discovery"}


def test_engine_does_no_http():
    for path in (ROOT / "daemon" / "engine").rglob("*.py"):
        text = path.read_text()
        assert "aiohttp" not in text and "pygls" not in text, path
