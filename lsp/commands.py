"""The server's `workspace/executeCommand` commands: `specd.toggle` and `specd.status`."""

from __future__ import annotations

import dataclasses
from typing import Any

from lsprotocol import types

from . import config
from .client import DaemonError


async def toggle(ls: Any) -> dict:
    """Completions off or on for this editor until the configured `enable` changes; returns {"enabled"}."""
    enable = ls.configuration.toggled = not ls.completer.settings.enable
    ls.completer.settings = dataclasses.replace(ls.completer.settings, enable=enable)
    ls.log(f"specd: completions {'enabled' if enable else 'disabled'}", types.MessageType.Info)
    return {"enabled": enable}


async def status(ls: Any) -> dict:
    """Counters of this server (numbers only, never text) and the daemon's own status."""
    counters = ls.completer.counters
    try:
        daemon: dict = await ls.client.status()
    except DaemonError as exc:
        daemon = {"error": str(exc)}
    return {
        "enabled": ls.completer.settings.enable,
        "settings": config.describe(ls.completer.settings),
        "positionEncoding": str(ls.encoding),
        "openDocuments": len(ls.docs),
        "requests": counters.requests,
        "decodes": counters.decodes,
        "typedAhead": counters.typed_ahead,
        "rememberedEmpty": counters.remembered_empty,
        "prefetches": counters.prefetches,
        "warmUps": counters.warmups,
        "superseded": counters.superseded,
        "failures": counters.failures,
        "last": counters.last,
        "daemon": daemon,
    }
