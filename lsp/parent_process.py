"""The editor that started the server: LSP `initialize.processId` ("If the parent process is not alive then the
server should exit", LSP 3.17 InitializeParams). An editor that dies without closing the server's stdin (killed,
crashed, its stdin handed on to a child) would otherwise leave `specd lsp` running for good.
"""

from __future__ import annotations

import asyncio
import os
from typing import Callable

from specd.daemon import discovery

POLL_S = 3.0  # how often the editor's process is looked for


def watch(pid: int | None, on_gone: Callable[[], None]) -> asyncio.Task | None:
    """Call `on_gone()` once process `pid` has ended (a zombie counts as ended), looking every POLL_S
    seconds; None (no watch) without a pid, on Windows (where signal 0 would end the process), or when `pid` does not
    exist now: an editor in another PID namespace (a container, Flatpak) sends a number that means nothing here."""
    if not isinstance(pid, int) or pid <= 0 or os.name == "nt" or not discovery.pid_alive(pid):
        return None

    async def poll() -> None:
        while discovery.pid_alive(pid):
            await asyncio.sleep(POLL_S)
        on_gone()

    return asyncio.get_running_loop().create_task(poll())
