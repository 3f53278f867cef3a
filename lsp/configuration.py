"""Where the server's settings come from and how problems with them are told.

Sources, later ones winning key by key: `initializationOptions` (its `specd` object, or its top-level keys
that are settings), then the `specd` section of `workspace/configuration` (pulled after `initialized` and
on every `workspace/didChangeConfiguration`, whose pushed section is applied at once). `specd.toggle` holds
until the configured `enable` itself changes. Each problem is told once per server: a bad value as a
warning pop-up (the user set it and should know), an unknown key only in the log (an editor config newer or
older than this server is not the user's fault).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lsprotocol import types

from . import config

SECTION = "specd"


class Configuration:
    """The settings in force for one editor connection."""

    def __init__(self) -> None:
        self.init_options: Any = None
        # specd.toggle's choice; it holds until the configured `enable` itself changes, so an unrelated
        # settings change does not silently turn completions back on.
        self.toggled: bool | None = None
        self._configured_enable: bool | None = None
        self._told: set[str] = set()

    def resolve(self, workspace_section: Any) -> tuple[config.Settings, list[config.Problem]]:
        """The settings from the init options and `workspace_section` (the `specd` section or None), and
        the problems not reported before."""
        init = self.init_options
        if isinstance(init, dict) and isinstance(init.get(SECTION), dict):
            init = init[SECTION]
        elif isinstance(init, dict):
            # Top-level initializationOptions may carry other keys for the editor's own use.
            init = {k: v for k, v in init.items() if config.is_setting(k)}
        settings, problems = config.merge(config.Settings(), init)
        settings, more = config.merge(settings, workspace_section)
        if self.toggled is not None and settings.enable == self._configured_enable:
            settings = dataclasses.replace(settings, enable=self.toggled)
        else:
            self.toggled = None
            self._configured_enable = settings.enable
        new = [p for p in problems + more if p.message not in self._told]
        self._told |= {p.message for p in new}
        return settings, new


def tell(ls: Any, problems: list[config.Problem]) -> None:
    """Report problems through the client: every one in the log, bad values also as a warning pop-up."""
    for problem in problems:
        if not problem.unknown_key:
            ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=problem.message))
        ls.log(problem.message, types.MessageType.Warning)


async def pull(ls: Any) -> Any:
    """The `specd` section from `workspace/configuration`, or None when the client cannot give it."""
    caps = ls.protocol.client_capabilities
    if not (caps and caps.workspace and caps.workspace.configuration):
        return None
    try:
        items = await ls.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as exc:  # a client that fails the request keeps the settings it has
        ls.log(f"specd: could not read the {SECTION} settings: {type(exc).__name__}", types.MessageType.Warning)
        return None
    return items[0] if items else None
