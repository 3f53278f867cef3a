"""Writing an editor's configuration file the careful way: backup first, atomic replace, no-op if unchanged."""

from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class ChangedUnderUs(RuntimeError):
    """The file changed between our read and our write (the editor saved it meanwhile)."""


@dataclass(frozen=True)
class WriteResult:
    """What `write_file` did: the `path` asked for, whether it `changed`, and the `backup` of the previous content (None
    when nothing was written or the file was new)."""

    path: Path
    changed: bool
    backup: Path | None


def read_text(path: Path) -> str | None:
    """The file's text, or None if it does not exist. Newlines are kept as they are in the file."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None


def backup_path(path: Path) -> Path:
    """A free backup name beside `path`: `<name>.specd-backup-YYYYmmdd-HHMMSS` (local time), with `-2`, `-3`, ... added
    while that exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.specd-backup-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.specd-backup-{stamp}-{n}")
    return candidate


def write_file(path: Path, new_text: str, old_text: str | None) -> WriteResult:
    """Replace `path` (whose content we read as `old_text`, None = absent) by `new_text`.

    A symlink is followed so a dotfile manager's link stays a link; the old content is copied to a
    backup beside the real file first; the new content appears at once (temp file + rename) with the old file's
    mode and, where the caller may set it (root), its owner; a file with other hard links is rewritten in place so
    that they keep seeing it. Raises ChangedUnderUs, PermissionError for a file the caller may not write (a
    read-only file is not replaced through its writable folder), or the OSError of a failed write.
    """
    if new_text == old_text:
        return WriteResult(path, False, None)
    real = Path(os.path.realpath(path))
    real.parent.mkdir(parents=True, exist_ok=True)
    if read_text(real) != old_text:
        raise ChangedUnderUs(f"{path} changed while specd was editing it; nothing written, run the command again")
    backup = None
    mode = 0o644
    old_stat = real.stat() if old_text is not None else None
    if old_stat is not None:
        if not os.access(real, os.W_OK):
            raise PermissionError(errno.EACCES, "the file is read-only for you", str(real))
        mode = old_stat.st_mode & 0o777
        backup = backup_path(real)
        with open(backup, "x", encoding="utf-8", newline="") as f:
            f.write(old_text)
        os.chmod(backup, mode)
    if old_stat is not None and old_stat.st_nlink > 1:
        with open(real, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
        return WriteResult(path, True, backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".specd-tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if old_stat is not None and (old_stat.st_uid, old_stat.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.chown(tmp, old_stat.st_uid, old_stat.st_gid)
            except PermissionError:  # only root may give a file away; the user's own copy is theirs
                pass
        os.replace(tmp, real)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return WriteResult(path, True, backup)
