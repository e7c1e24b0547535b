"""The index bundle on disk, and the rules that keep a user's data safe around it.

A bundle is a folder (what ``rag index`` writes)::

    bundle.json   format version, generation, the sides, and the sha256 of every other top-level file and
                  of each side's manifest.json (a side's manifest checksums that side's own files)
    config.yaml   the config the bundle was built with
    build.json    counts, time, size, what was skipped and warned about
    dense/ bm25/  one index folder per retrieval side (:mod:`indexers.manifest`)

The rules, all enforced here:

- **The bundle is the unit of atomicity.** Every write (build, add, delete) assembles a complete new
  bundle in a hidden sibling folder ``.NAME.building-*`` and swaps it into place in one step
  (:func:`indexers.manifest.swap_into_place`). A reader sees the
  old bundle or the new one, both sides of a hybrid bundle from the same write. An error before the swap
  means that nothing changed.
- **One writer at a time.** A writer holds ``.NAME.lock`` (beside the bundle, because the bundle folder
  itself is swapped) for the whole read-modify-write. A second writer says that it waits, waits up to a
  timeout, then fails with :class:`BundleLockedError`. Readers never take the lock.
- **Nothing of the user's is replaced.** :func:`check_bundle_target` refuses a file, a non-empty folder
  that is not a bundle, the corpus or a folder holding it, the current folder and its parents.
- **Interrupted writes heal.** The next writer, holding the lock, restores a bundle left aside by a swap
  that was killed half-way, and removes what dead writers left behind, saying how much it freed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexers.manifest import MANIFEST_NAME, sha256_file, swap_into_place
from rag.core.errors import ConfigError, IndexCorruptError, LockTimeoutError, NotFoundError
from rag.core.files import fsync_dir, fsync_file, human_bytes, make_dir, write_file_atomically

BUNDLE_MANIFEST = "bundle.json"
BUNDLE_CONFIG = "config.yaml"
BUILD_SUMMARY = "build.json"
BUNDLE_FORMAT_VERSION = 1
SIDES = ("dense", "bm25", "multivector")
# A second writer waits this long for the first before giving up; RAG_LOCK_TIMEOUT overrides it.
DEFAULT_LOCK_TIMEOUT = 300.0
BUILD_HINT = "build one with `rag index --config ... --corpus ... --out ...`"

Notify = Callable[[str], None]


class BundleLockedError(LockTimeoutError):
    """Another process is writing to the bundle and did not finish within the lock timeout."""


class BundleNotFoundError(NotFoundError):
    """No bundle at the path given: nothing there, a file, or a folder ``rag index`` did not write
    (exit 2, HTTP 404: the caller named the wrong thing; a damaged bundle is an IndexCorruptError)."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ recognition


def is_bundle(path: str | Path) -> bool:
    """True for a folder written by ``rag index``: it has ``bundle.json``, or (bundles written before
    ``bundle.json`` existed) ``config.yaml`` beside a ``dense/`` or ``bm25/`` index."""
    folder = Path(path)
    if not folder.is_dir() or folder.is_symlink():
        return False
    if (folder / BUNDLE_MANIFEST).is_file():
        return True
    return (folder / BUNDLE_CONFIG).is_file() and any((folder / s / MANIFEST_NAME).is_file() for s in SIDES)


def read_bundle_manifest(path: str | Path, notify: Notify | None = None) -> dict[str, Any]:
    """Read ``bundle.json`` and check every checksum it lists; a legacy bundle gets a synthetic one.

    Raises :class:`IndexCorruptError` naming the folder or file that is missing or does not match.
    """
    folder = check_bundle_exists(path, notify)
    manifest_path = folder / BUNDLE_MANIFEST
    if not manifest_path.is_file():
        if not is_bundle(folder):
            raise BundleNotFoundError(
                f"{folder} is not an index bundle written by `rag index` (no {BUNDLE_MANIFEST}); {BUILD_HINT}"
            )
        sides = [s for s in SIDES if (folder / s).is_dir()]
        return {"format_version": 0, "generation": 0, "sides": sides, "checksums": {}}
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(f"{manifest_path} cannot be read as JSON ({exc}); {BUILD_HINT}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checksums"), dict):
        raise IndexCorruptError(f"{manifest_path} is not a bundle manifest; {BUILD_HINT}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > BUNDLE_FORMAT_VERSION:
        raise IndexCorruptError(
            f"{manifest_path} has format version {version!r}; this library reads up to "
            f"{BUNDLE_FORMAT_VERSION}. Upgrade rag-pipelines, or rebuild: {BUILD_HINT}"
        )
    for name, expected in sorted(manifest["checksums"].items()):
        file_path = folder / name
        if not file_path.is_file():
            raise IndexCorruptError(f"bundle file {file_path} is missing; {BUILD_HINT}")
        if sha256_file(file_path) != expected:
            side = name.split("/")[0]
            what = (
                f"the {side} index does not belong to this bundle's last write (mixed generations)"
                if side in SIDES
                else "it is corrupted or was changed after the bundle was written"
            )
            raise IndexCorruptError(
                f"bundle file {file_path} does not match {BUNDLE_MANIFEST}: {what}; {BUILD_HINT}"
            )
    return manifest


def check_bundle_exists(path: str | Path, notify: Notify | None = None) -> Path:
    """The bundle folder, or a clear error: it does not exist (naming a copy left by an interrupted
    write, after restoring it when no writer is busy), or it is a file."""
    folder = Path(path)
    if folder.is_dir():
        return folder
    if folder.exists():
        raise BundleNotFoundError(f"{folder} is a file, not an index bundle folder; {BUILD_HINT}")
    restored = _restore_for_reader(folder, notify or _stderr)
    if restored:
        return folder
    aside = _aside_copies(folder)
    if aside:
        raise IndexCorruptError(
            f"index bundle {folder} is missing because a write was interrupted; the previous bundle is at "
            f"{aside[-1]}. The next `rag add`, `rag delete` or `rag index` on {folder} restores it, or "
            f"rename it back yourself"
        )
    raise BundleNotFoundError(f"index bundle {folder} does not exist; {BUILD_HINT}")


# ------------------------------------------------------------------------------------------ target guard


def check_bundle_target(out: str | Path, corpus: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` unless a bundle may be written at ``out``.

    Allowed: a path that does not exist, an empty folder, or an existing bundle (it gets replaced).
    Refused, naming what is there and suggesting a new path: a file, a symbolic link, a non-empty folder
    that is not a bundle, the corpus itself or a folder containing it, the current folder or any parent
    of it.
    """
    target = Path(out)
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    suggestion = _suggest_path(target)
    if resolved == cwd or resolved in cwd.parents:
        where = "the current folder" if resolved == cwd else f"a parent of the current folder ({cwd})"
        raise ConfigError(
            f"refusing to write an index bundle at {out}: it is {where}, and writing there replaces the "
            f"folder. Choose a new folder, e.g. --out {suggestion}"
        )
    if corpus is not None:
        source = Path(corpus).resolve()
        if source == resolved or resolved in source.parents:
            raise ConfigError(
                f"refusing to write an index bundle at {out}: it "
                f"{'is' if source == resolved else 'contains'} the corpus {corpus}, which writing there "
                f"would delete. Choose a new folder, e.g. --out {suggestion}"
            )
    if target.is_symlink():
        raise ConfigError(
            f"refusing to write an index bundle at {out}: it is a symbolic link (to {os.readlink(target)}). "
            f"Give the real path, or a new folder such as --out {suggestion}"
        )
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(
            f"refusing to write an index bundle at {out}: it is a file, which would be replaced. "
            f"Choose a new folder, e.g. --out {suggestion}"
        )
    if is_bundle(target):
        return
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ConfigError(
            f"refusing to write an index bundle at {out}: it is a folder of {len(entries)} entries that is "
            f"not an index bundle ({shown}), and writing there would delete them. Choose a new folder, "
            f"e.g. --out {suggestion}"
        )


def _suggest_path(target: Path) -> Path:
    base = target.resolve()
    stem = base.stem if base.suffix and not base.is_dir() else base.name
    cwd = Path.cwd().resolve()
    # Next to the target, unless the target is the current folder or a parent of it.
    parent = base.parent if base != cwd and base not in cwd.parents else cwd / "runs"
    candidate = parent / f"{stem or 'rag'}-index"
    number = 2
    while candidate.exists():
        candidate = parent / f"{stem or 'rag'}-index-{number}"
        number += 1
    try:
        return candidate.relative_to(cwd)
    except ValueError:
        return candidate


# ------------------------------------------------------------------------------------------ writing


@dataclass
class BundleWrite:
    """One write in progress: fill ``staging`` (an empty folder), then :meth:`commit`."""

    target: Path
    staging: Path
    generation: int

    def commit(self) -> None:
        """Checksum the staged files into ``bundle.json``, flush everything and swap it into place."""
        sides = [s for s in SIDES if (self.staging / s / MANIFEST_NAME).is_file()]
        names = [n for n in (BUNDLE_CONFIG, BUILD_SUMMARY) if (self.staging / n).is_file()]
        names += [f"{s}/{MANIFEST_NAME}" for s in sides]
        manifest = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "generation": self.generation,
            "sides": sides,
            "checksums": {name: sha256_file(self.staging / name) for name in names},
        }
        for name in names:
            fsync_file(self.staging / name)
        write_file_atomically(self.staging / BUNDLE_MANIFEST, json.dumps(manifest, indent=2) + "\n")
        fsync_dir(self.staging)
        swap_into_place(self.staging, self.target)


@contextmanager
def bundle_write(
    out: str | Path,
    notify: Notify | None = None,
    lock_timeout: float | None = None,
    must_exist: bool = False,
) -> Iterator[BundleWrite]:
    """Hold the bundle's writer lock, heal what earlier writes left, and stage a new bundle.

    The body fills ``write.staging`` and calls ``write.commit()``. Whatever happens before the commit,
    the bundle at ``out`` is untouched and the staging folder is removed.
    """
    target = Path(out)
    say = notify or _stderr
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target, say, lock_timeout):
        heal(target, say)
        generation = 0
        if must_exist or is_bundle(target):
            generation = _generation(target, strict=must_exist) + 1
        staging = make_dir(target.parent, f".{target.name}.building-{os.getpid()}-")
        write = BundleWrite(target, staging, generation)
        try:
            yield write
        finally:
            # After a commit the staging path holds the previous bundle (or nothing): remove it too.
            shutil.rmtree(staging, ignore_errors=True)


def _generation(target: Path, strict: bool) -> int:
    """The generation of the bundle at ``target``; a rebuild (not strict) may replace a damaged one."""
    try:
        return int(read_bundle_manifest(target).get("generation", 0))
    except IndexCorruptError:
        if strict:
            raise
        return 0


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextmanager
def writer_lock(target: Path, notify: Notify, timeout: float | None = None) -> Iterator[None]:
    """The one-writer lock of a bundle (``filelock``: ``flock`` on Unix, released by the kernel when a
    process dies, so a killed writer never leaves a stale lock)."""
    from filelock import FileLock, Timeout

    wait = lock_timeout_seconds(timeout)
    lock = FileLock(str(lock_path(target)), mode=0o666)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        notify(f"another process is writing to {target}; waiting up to {wait:.0f} s for it to finish")
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise BundleLockedError(
                f"another process kept writing to {target} for more than {wait:.0f} s "
                f"({lock_path(target)} is locked); nothing was changed. Try again when it has finished, "
                f"or raise RAG_LOCK_TIMEOUT"
            ) from None
    try:
        yield
    finally:
        lock.release()


def lock_timeout_seconds(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    raw = os.environ.get("RAG_LOCK_TIMEOUT")
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"RAG_LOCK_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"RAG_LOCK_TIMEOUT must not be negative, got {raw!r}")
    return value


# ------------------------------------------------------------------------------------------ healing


def heal(target: Path, notify: Notify) -> None:
    """Under the writer lock: restore a bundle left aside by an interrupted swap, then remove the
    leftovers of dead writers (staging folders, aside copies, temporary index folders inside the bundle)
    and say how much that freed."""
    if not target.exists():
        aside = _aside_copies(target)
        if aside and is_bundle(aside[-1]):
            os.rename(aside[-1], target)
            fsync_dir(target.parent)
            notify(f"restored {target} from {aside[-1].name}, left aside by an interrupted write")
    leftovers = [*target.parent.glob(f".{target.name}.building-*"), *_aside_copies(target)]
    if target.is_dir():
        for folder in (target, *(target / s for s in SIDES)):
            if folder.is_dir():
                leftovers += [p for p in folder.iterdir() if p.name.startswith(".") and _is_temporary(p.name)]
    freed = 0
    for path in leftovers:
        freed += _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if leftovers:
        notify(
            f"removed {len(leftovers)} leftover(s) of interrupted writes next to or inside {target} "
            f"({human_bytes(freed)} freed)"
        )


def _is_temporary(name: str) -> bool:
    return any(mark in name for mark in (".tmp-", ".old-", ".building-"))


def _aside_copies(target: Path) -> list[Path]:
    copies = [p for p in target.parent.glob(f".{target.name}.old-*") if p.is_dir()]
    return sorted(copies, key=lambda p: p.stat().st_mtime_ns)


def _restore_for_reader(target: Path, notify: Notify) -> bool:
    """A reader finding no bundle but an aside copy restores it if no writer is busy (never waits)."""
    if not _aside_copies(target) or not target.parent.is_dir():
        return False
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path(target)), mode=0o666)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return False
    try:
        heal(target, notify)
    finally:
        lock.release()
    return target.is_dir()


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_size
            except OSError:
                pass
    return total
