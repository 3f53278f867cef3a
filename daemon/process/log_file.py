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
    """Where a rotated log goes: `specd.log.1` next to `specd.log`."""
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
    `older()` and point fds 1 and 2 at a new, empty `log_file` with the same permissions. Returns whether it did;
    an stdout that is not the log (a terminal, `specd serve` run by hand) is left alone. Raises OSError when the
    folder cannot take the new file."""
    try:
        written, on_disk = os.fstat(1), os.stat(log_file)
    except OSError:
        return False
    if (written.st_dev, written.st_ino) != (on_disk.st_dev, on_disk.st_ino) or on_disk.st_size <= max_bytes:
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    os.replace(log_file, older(log_file))
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, on_disk.st_mode & 0o777)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    return True


def follow(log_file: Path, write, poll_s: float = 0.2, stop=lambda: False) -> None:
    """`tail -F`: pass each new line of `log_file` (from its current end on; from its start when it does not
    exist yet) to `write(str)` until `stop()`, and go on in the new file when the log is rotated (or removed and
    written again), from that file's start."""
    current, started = None, not log_file.exists()
    try:
        while not stop():
            if current is None:
                try:
                    current = open(log_file, "rb")
                except FileNotFoundError:
                    time.sleep(poll_s)
                    continue
                if not started:
                    current.seek(0, os.SEEK_END)
                started = True
            line = current.readline()
            if line:
                write(line.decode("utf-8", "replace"))
            elif _moved(current, log_file):
                current.close()
                current = None
            else:
                time.sleep(poll_s)
    finally:
        if current is not None:
            current.close()


def _moved(opened, log_file: Path) -> bool:
    try:
        now, was = os.stat(log_file), os.fstat(opened.fileno())
    except FileNotFoundError:
        return False  # not written again yet: the moved file may still get lines
    return (now.st_dev, now.st_ino) != (was.st_dev, was.st_ino)
