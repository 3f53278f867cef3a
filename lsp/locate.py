"""Finding the running daemon (its URL and token), or starting it the way `specd start` does."""

from __future__ import annotations

from dataclasses import dataclass

from specd.daemon import discovery


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str


def find() -> Endpoint | None:
    # A daemon still loading its models is used too: its queue holds the request until it is ready.
    info = discovery.find_daemon()
    return Endpoint(info.url, info.token) if info is not None else None


def start() -> Endpoint:
    """Blocking: returns once the daemon answers; raises with the reason when it cannot start."""
    info = discovery.ensure_daemon_running()
    return Endpoint(info.url, info.token)


def settings_stamp() -> object:
    """Changes when settings.json does (see discovery.settings_stamp)."""
    return discovery.settings_stamp()
