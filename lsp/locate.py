"""Finding the running daemon (its URL and token), or starting it the way `specd start` does."""

from __future__ import annotations

from dataclasses import dataclass

from specd.daemon import discovery


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon answers: its base `url` (no trailing slash), API bearer `token` and `request_timeout`
    (seconds; None when its state does not say)."""

    url: str
    token: str
    request_timeout: float | None = None  # seconds the daemon gives a request before it answers what it has


def _endpoint(info: discovery.DaemonInfo) -> Endpoint:
    return Endpoint(info.url, info.token, info.request_timeout)


def find() -> Endpoint | None:
    """The running daemon's Endpoint, one still loading its models included (its queue holds requests until it is
    ready); None when none runs (discovery.find_daemon)."""
    # A daemon still loading its models is used too: its queue holds the request until it is ready.
    info = discovery.find_daemon()
    return _endpoint(info) if info is not None else None


def start() -> Endpoint:
    """Blocking: returns once the daemon answers; raises with the reason when it cannot start."""
    return _endpoint(discovery.ensure_daemon_running())


def settings_stamp() -> object:
    """Changes when settings.json does (see discovery.settings_stamp)."""
    return discovery.settings_stamp()
