"""The running daemon's footprint on disk: the state file (daemon.json) and the lock; and the flags of the last
start (start_flags.json), which outlive a daemon that failed to start.

The daemon holds an exclusive flock on the lock file for its whole life. The kernel drops the lock
when the process dies, even by SIGKILL, so "state file present but lock free" reliably means stale
state, without trusting a pid that may have been reused. Cheap to import: no torch, no aiohttp.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path

from specd.daemon.config.paths import Paths, ensure_dir

log = logging.getLogger("specd.state")

# `specd start` takes the lock itself and hands it to the daemon it spawns as this inherited descriptor, so that
# of two starts at the same moment only one spawns a daemon and the other sees the lock held and waits for it.
LOCK_FD_ENV = "SPECD_LOCK_FD"


class DaemonLock:
    """The daemon's exclusive flock on `lock_file` (the Paths lock file), held for the daemon's whole life: the kernel
    drops it when the process dies, so a free lock means any state file is stale. `acquire` takes it (non-blocking,
    opening the file 0600 in a private folder), `adopt` takes over one a parent `specd start` holds on an inherited
    descriptor (LOCK_FD_ENV), `release` closes the descriptor."""

    def __init__(self, lock_file: Path) -> None:
        self.lock_file = lock_file
        self._fd: int | None = None

    @property
    def fd(self) -> int | None:
        """The descriptor that holds the lock, or None when it is not held."""
        return self._fd

    def acquire(self, attempts: int = 1) -> bool:
        """Non-blocking; `attempts` > 1 retries briefly, because `specd status` and the stale-state
        check take the lock for an instant too."""
        ensure_dir(self.lock_file.parent, private=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if attempt + 1 < attempts:
                    time.sleep(0.05)
                continue
            self._fd = fd
            return True
        os.close(fd)
        return False

    def adopt(self, fd: int) -> bool:
        """Take over the lock that the process which started this one holds on descriptor `fd` (inherited).
        False when `fd` is not an open descriptor of this lock file holding the lock."""
        try:
            if not os.path.samestat(os.fstat(fd), os.stat(self.lock_file)):
                return False
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no-op where this open file holds the lock already
        except OSError:  # closed, not ours, or held by another open file (BlockingIOError)
            return False
        os.set_inheritable(fd, False)  # programs the daemon runs (pip) must not keep the lock after it exits
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (close the descriptor)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def lock_is_held(lock_file: Path) -> bool:
    """Whether a process holds an exclusive flock on `lock_file` (a shared one cannot be taken at once), without
    waiting; False when the file does not exist."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_state(paths: Paths) -> dict | None:
    """The state file's object (daemon.json: pid, url, host, port, token_file, aws_keys_file, version, started_at,
    flags, settings, status, as process/lifecycle.py writes it); None when there is no file, {} when it cannot be read
    or is not a JSON object (only the lock can tell whether it is stale)."""
    try:
        data = json.loads(paths.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: only its lock can tell whether it is stale
    return data if isinstance(data, dict) else {}


def write_private(target: Path, text: str) -> None:
    """Write `text` to `target` (mode 0600, in a private folder) atomically: readers see the old file or the new
    one, never half of one."""
    ensure_dir(target.parent, private=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, target)


def write_state(paths: Paths, state: dict) -> None:
    """Write `state` to the state file as indented JSON, atomically and private (write_private)."""
    write_private(paths.state_file, json.dumps(state, indent=2) + "\n")


def remove_state(paths: Paths) -> None:
    """Delete the state file; no error when it is gone already."""
    try:
        paths.state_file.unlink()
    except FileNotFoundError:
        pass


def _start_flags_file(paths: Paths) -> Path:
    return paths.state_dir / "start_flags.json"


def write_start_flags(paths: Paths, flags: list[str]) -> None:
    """Remember the flags a start gives `specd serve`, for `specd restart` when no daemon runs to tell them (its
    start failed, or it died). Atomic, as write_state."""
    write_private(_start_flags_file(paths), json.dumps({"flags": list(flags)}) + "\n")


def read_start_flags(paths: Paths) -> list[str] | None:
    """The flags write_start_flags remembered, or None (none remembered, or the file is not such a record)."""
    try:
        flags = json.loads(_start_flags_file(paths).read_text(encoding="utf-8")).get("flags")
    except (OSError, ValueError, AttributeError):
        return None
    return flags if isinstance(flags, list) and all(isinstance(flag, str) for flag in flags) else None


def forget_start_flags(paths: Paths) -> None:
    """`specd stop` drops the remembered flags: the next start or restart starts from settings.json alone."""
    try:
        _start_flags_file(paths).unlink()
    except FileNotFoundError:
        pass


def read_token(token_file: Path) -> str | None:
    """The API token in `token_file`, stripped; None when the file cannot be read or is empty."""
    try:
        return token_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """A zombie counts as dead: it has exited, its new parent just has not reaped it yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here (macOS): the signal test is all we have
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def process_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat, field 22), to tell it from a later
    process given the same pid; None where there is no /proc (macOS) or no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def same_process_alive(pid: int, started: str | None) -> bool:
    """Whether `pid` is still the live process that `process_start` found started at `started` (on systems
    without /proc, whether any process has that pid)."""
    return pid_alive(pid) and (started is None or process_start(pid) == started)


def live_state(paths: Paths) -> dict | None:
    """The running daemon's state, or None. A state file left by a dead daemon is removed here."""
    state = read_state(paths)
    if state is None:
        return None
    if not lock_is_held(paths.lock_file):
        # Remove it only while holding the lock ourselves, so a daemon starting right now cannot
        # have its fresh state file deleted.
        lock = DaemonLock(paths.lock_file)
        if lock.acquire():
            try:
                log.info("removing stale state left by pid %s", state.get("pid"))
                remove_state(paths)
            finally:
                lock.release()
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid) or not isinstance(state.get("url"), str):
        return None  # a new daemon holds the lock and has not written its state yet
    return state
