"""Writing files the way an appliance needs: atomic (temp, fsync, rename), with mode and owner,
and untouched when the content is already right (an install run twice changes nothing)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Owner", "ensure_dir", "fsync_dir", "write_atomic"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Numeric owner for files; None = leave as created (tests that do not run as root)."""

    uid: int
    gid: int


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chown(path: Path, owner: Owner | None) -> None:
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def ensure_dir(path: Path, mode: int, owner: Owner | None = None) -> bool:
    """Create `path` (and parents, 0755) if missing; set its mode and owner. True if created."""
    created = not path.is_dir()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=mode, exist_ok=True)
    os.chmod(path, mode)
    _chown(path, owner)
    return created


def write_atomic(
    path: Path, data: bytes, mode: int = 0o644, owner: Owner | None = None, *, replace: bool = True
) -> bool:
    """Write `data` to `path` atomically; True if the file changed.

    The temp file is created with `mode` from the start, so a secret is never readable by others,
    not even for a moment. With `replace=False` an existing file is kept as it is.
    """
    if path.exists() and (not replace or path.read_bytes() == data):
        os.chmod(path, mode)
        _chown(path, owner)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT applies the umask; the mode must not depend on it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    _chown(tmp, owner)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return True
