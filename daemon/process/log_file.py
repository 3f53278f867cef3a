"""The daemon's log file (`paths.log_file`: the daemon's stdout and stderr) kept under MAX_LOG_BYTES.

A log over the limit moves to `<name>.1` (replacing the older one): before a daemon starts, and while one runs
(checked every few seconds by lifecycle._keep_files), where the daemon also points its own stdout and stderr at a
new file, as `logrotate` with a postrotate reopen would, so a daemon that runs for months never fills the disk
with its per-request lines. `specd logs -f` follows the name, not the moved file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MAX_LOG_BYTES = 5 * 1024 * 1024


def older(log_file: Path) -> Path:
    """Where a rotated log goes: `daemon.log.1` next to `daemon.log`."""
    return log_file.with_name(log_file.name + ".1")


def rotate_before_start(log_file: Path, max_bytes: int = MAX_LOG_BYTES) -> None:
    """Move a log over `max_bytes` to `older()`; the daemon about to start opens a new one."""
    try:
        if log_file.stat().st_size > max_bytes:
            os.replace(log_file, older(log_file))
    except FileNotFoundError:
        pass


def rotate_while_running(log_file: Path, max_bytes: int = MAX_LOG_BYTES) -> bool:
    """In the daemon: when its stdout (fd 1) is `log_file` and that holds more than `max_bytes`, move it to
    `older()` and point fd 1 (and fd 2 when it wrote to the log too) at a new, empty `log_file` with the same
    permissions. The new file is made before the old one moves, so a full disk leaves the log where it was. Returns
    whether it rotated; an stdout that is not the log (a terminal, `specd serve` run by hand) is left alone.
    Raises OSError when the folder cannot take the new file."""
    try:
        written, on_disk = os.fstat(1), os.stat(log_file)
    except OSError:
        return False
    if _identity(written) != _identity(on_disk) or on_disk.st_size <= max_bytes:
        return False
    errors_too = _identity(os.fstat(2)) == _identity(written)
    fresh = log_file.with_name(log_file.name + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, on_disk.st_mode & 0o777)
        sys.stdout.flush()
        sys.stderr.flush()
        os.replace(log_file, older(log_file))
        os.replace(fresh, log_file)
        os.dup2(fd, 1)
        if errors_too:
            os.dup2(fd, 2)
    finally:
        os.close(fd)
    return True


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def follow(log_file: Path, write, start: int | None = None, poll_s: float = 0.2, stop=lambda: False) -> None:
    """`tail -F`: pass each new line of `log_file` to `write(str)` until `stop()`, from byte `start` of the file
    there now (None: its end; a log that does not exist yet is read from its start), and go on in the new file when
    the log is rotated (or removed and written again), from that file's start, after the last lines the old one
    got."""
    current, offset = None, start
    try:
        while not stop():
            if current is None:
                try:
                    current = open(log_file, "rb")
                except FileNotFoundError:
                    offset = 0
                    time.sleep(poll_s)
                    continue
                current.seek(offset or 0, os.SEEK_SET if offset is not None else os.SEEK_END)
                offset = 0  # files after this one are read from their start
            line = current.readline()
            if line:
                write(line.decode("utf-8", "replace"))
            elif _moved(current, log_file):
                for line in current:  # what reached the old file after the last read
                    write(line.decode("utf-8", "replace"))
                current.close()
                current = None
            else:
                time.sleep(poll_s)
    finally:
        if current is not None:
            current.close()


def _moved(opened, log_file: Path) -> bool:
    try:
        now = os.stat(log_file)
    except FileNotFoundError:
        return False  # not written again yet: the moved file may still get lines
    return _identity(now) != _identity(os.fstat(opened.fileno()))
