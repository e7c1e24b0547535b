"""Writing files safely: the one atomic-write helper every writer uses, and what it is made of.

A file is written to a hidden sibling, flushed to disk and renamed over the target, so a reader or a
crash sees the old content or the new, never a part. Folders are made with the user's umask.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def make_dir(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/PREFIX<random>``, created with the user's umask.

    ``tempfile.mkdtemp`` would make it 0700, and renamed into place that would keep a colleague or a
    service account from reading a shared index.
    """
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir(mode=0o777)
            return path
        except FileExistsError:
            continue


def write_file_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text exactly as given, no newline translation, or bytes) so that a reader or a
    crash sees the old file or the new one, never a part of it."""
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        if isinstance(content, bytes):
            with open(tmp, "wb") as raw:
                raw.write(content)
                raw.flush()
                os.fsync(raw.fileno())
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as text:
                text.write(content)
                text.flush()
                os.fsync(text.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def human_bytes(n: float) -> str:
    """A size for people: ``512 B``, ``4.9 KB``, ``16.5 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    # Directory fsync makes renames durable on POSIX; not supported on every platform.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
