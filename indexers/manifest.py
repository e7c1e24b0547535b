"""The index folder contract: ``manifest.json``, checksums, and atomic writes.

An index is a folder. ``manifest.json`` holds the format version, what kind of index it is and how it was
built, and the sha256 of every other file in the folder. A folder is written next to its target as
``.NAME.tmp-XXXX`` and renamed into place only once every file and the manifest are on disk, so a crash
never leaves a half-written index where a good one stood.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from rag.core.errors import ConfigError, IndexCorruptError
from rag.core.files import fsync_dir, fsync_file, make_dir

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
REBUILD_HINT = "Rebuild the index with `rag index`."

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check the shape of ``PATH/manifest.json``.

    Raises :class:`IndexCorruptError` when the folder or manifest is missing, the manifest is not valid
    JSON, lacks its required keys, or was written by a newer format version.
    """
    folder = Path(path)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if not folder.exists():
            problem = f"no index at {folder}: the folder does not exist"
        else:
            problem = f"{manifest_path} is missing, so {folder} is not a complete index"
        raise IndexCorruptError(f"{problem}{_interrupted_save_hint(folder)}. {REBUILD_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(f"{manifest_path} cannot be read as JSON ({exc}). {REBUILD_HINT}") from exc
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{manifest_path} must hold a JSON object. {REBUILD_HINT}")
    missing = [key for key in ("format_version", "index_type", "checksums") if key not in manifest]
    if missing:
        raise IndexCorruptError(f"{manifest_path} lacks the keys {missing}. {REBUILD_HINT}")
    version = manifest["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise IndexCorruptError(f"{manifest_path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise IndexCorruptError(
            f"{manifest_path} has format version {version}, newer than the {FORMAT_VERSION} this library "
            f"reads. Upgrade rag-pipelines, or rebuild the index with `rag index`."
        )
    if not isinstance(manifest["checksums"], dict):
        raise IndexCorruptError(f"{manifest_path}: checksums must be an object. {REBUILD_HINT}")
    return manifest


def verify_checksums(path: str | Path, manifest: dict[str, Any]) -> None:
    """Check that every file listed in ``manifest["checksums"]`` exists and has that sha256.

    Raises :class:`IndexCorruptError` naming the first missing or mismatching file.
    """
    folder = Path(path)
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or not checksums:
        raise IndexCorruptError(f"{folder / MANIFEST_NAME} lists no file checksums. {REBUILD_HINT}")
    for name, expected in sorted(checksums.items()):
        file_path = folder / _safe_relative(name, folder)
        if not file_path.is_file():
            raise IndexCorruptError(f"index file {file_path} is missing. {REBUILD_HINT}")
        actual = sha256_file(file_path)
        if actual != expected:
            raise IndexCorruptError(
                f"index file {file_path} does not match its checksum in {MANIFEST_NAME} (the file is "
                f"corrupted or was changed after the index was written). {REBUILD_HINT}"
            )


def write_index_atomically(path: str | Path, write_files: Callable[[Path], dict[str, Any]]) -> None:
    """Write an index folder at ``path`` so that readers see either the old index or the new one.

    ``write_files(tmpdir)`` writes the index files into an empty temporary folder (a sibling of ``path``)
    and returns the manifest body. This function adds ``format_version`` and the sha256 of every file,
    writes ``manifest.json``, flushes everything to disk, then renames the folder into place. An existing
    index at ``path`` is renamed aside first and removed only after the new one is in place. If
    ``write_files`` raises, the temporary folder is removed and ``path`` is left untouched.
    """
    target = Path(path)
    check_index_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_dir(target.parent, f".{target.name}.tmp-")
    try:
        body = write_files(tmp)
        if not isinstance(body, dict):
            raise TypeError(f"write_files must return the manifest body as a dict, got {type(body).__name__}")
        manifest = dict(body)
        manifest["format_version"] = FORMAT_VERSION
        manifest["checksums"] = _checksum_tree(tmp)
        manifest_path = tmp / MANIFEST_NAME
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        fsync_file(manifest_path)
        fsync_dir(tmp)
        swap_into_place(tmp, target)
    finally:
        # Before the swap: the unfinished new index; after it: the previous one (or nothing).
        shutil.rmtree(tmp, ignore_errors=True)


def check_index_target(path: str | Path) -> None:
    """Raise :class:`ConfigError` unless an index may be written at ``path``.

    Allowed: a new path, an empty folder, or an existing index (it gets replaced). Replacing any other
    folder would delete the user's files, so it is refused.
    """
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"cannot write an index to {target}: it is a file. Choose a folder path.")
    if (target / MANIFEST_NAME).is_file() or not any(target.iterdir()):
        return
    raise ConfigError(
        f"refusing to replace {target}: it is a non-empty folder without {MANIFEST_NAME}, so not an index. "
        f"Choose an empty or new folder."
    )


def _checksum_tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, keyed by POSIX relative path.

    Each file is also fsynced, so its bytes are on disk before the folder is renamed into place.
    """
    checksums: dict[str, str] = {}
    for file_path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = file_path.relative_to(folder).as_posix()
        if relative == MANIFEST_NAME:
            continue
        fsync_file(file_path)
        checksums[relative] = sha256_file(file_path)
    return checksums


def _safe_relative(name: Any, folder: Path) -> Path:
    # A manifest entry must stay inside the folder (no absolute paths, no "..").
    pure = PurePosixPath(name) if isinstance(name, str) else None
    if pure is None or pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise IndexCorruptError(
            f"{folder / MANIFEST_NAME} lists an invalid file name {name!r}. {REBUILD_HINT}"
        )
    return Path(*pure.parts)


def _interrupted_save_hint(folder: Path) -> str:
    parent = folder.parent
    if not parent.is_dir():
        return ""
    leftovers = sorted(parent.glob(f".{folder.name}.old-*"))
    if not leftovers:
        return ""
    return (
        f" (a save was interrupted: the previous index is at {leftovers[-1]}; rename it back to "
        f"{folder} to use it)"
    )


def swap_into_place(staging: Path, target: Path) -> None:
    """Make the folder ``staging`` appear at ``target``; the previous ``target`` (if any) ends at ``staging``.

    Linux swaps both names in one atomic step (``renameat2`` with ``RENAME_EXCHANGE``; ``os.rename`` takes
    no flags, hence ctypes), so neither a reader nor a crash ever finds ``target`` missing. Where the
    kernel or file system lacks it, the old folder is renamed aside to ``.NAME.old-*`` first; a kill
    between the two renames leaves it there, named by the error a reader gets, and restored by the next
    bundle writer (:func:`indexers.bundle.heal`).
    """
    if not target.exists():
        os.rename(staging, target)
        fsync_dir(target.parent)
        return
    if _rename_exchange(staging, target):
        fsync_dir(target.parent)
        return
    aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    fsync_dir(target.parent)
    os.rename(aside, staging)  # the caller's cleanup of ``staging`` then removes the old folder


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _rename_exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))
