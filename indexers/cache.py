"""One process-wide cache of loaded indexes, so that two pipeline nodes over one index load it once.

A folder index is keyed by its resolved path and the sha256 of its ``manifest.json``. Every write
replaces the manifest (its checksums change with any file), so an index swapped in by ``rag add`` or a
rebuild gets a new key and is loaded afresh, and the entry of the old one is dropped. A URI location
(``qdrant://...``) is keyed by the URI string: its server owns its freshness.

The cached object is shared: treat it as read-only. To change an index, open a private copy with
:func:`indexers.load_index` and save it (see :mod:`indexers.bundle`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from indexers.base import Index, load_index, uri_scheme
from indexers.manifest import MANIFEST_NAME, read_manifest, sha256_file

if TYPE_CHECKING:
    from rag.encoders.dense import EncoderFingerprint

CacheKey = tuple[str, str]

_CACHE: dict[CacheKey, Index] = {}
# One lock for lookups and loads: two threads warming up nodes over the same index load it once.
_LOCK = threading.RLock()


def cache_key(location: str | Path) -> CacheKey:
    """``(resolved folder, sha256 of its manifest.json)``, or ``(uri, "")`` for a URI.

    A folder without a readable manifest raises :class:`~rag.core.errors.IndexCorruptError`.
    """
    if uri_scheme(location) is not None:
        return (str(location), "")
    folder = Path(location).resolve()
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        read_manifest(folder)  # raises the error that explains what is missing
    return (str(folder), sha256_file(manifest))


def cached_index(location: str | Path, fingerprint: EncoderFingerprint | None = None) -> Index:
    """The index at ``location``, loaded once per process and manifest.

    ``fingerprint`` is checked on every call, also when the index comes from the cache, so a node with
    the wrong query encoder is refused even if another node loaded the index first.
    """
    with _LOCK:
        key = cache_key(location)
        index = _CACHE.get(key)
        if index is None:
            index = load_index(location, fingerprint)
            # The manifest may have been swapped while the files were read: key by what was loaded.
            loaded_key = cache_key(location)
            if loaded_key != key:
                return cached_index(location, fingerprint)
            for stale in [k for k in _CACHE if k[0] == key[0]]:
                del _CACHE[stale]
            _CACHE[key] = index
        elif fingerprint is not None and index.fingerprint is not None:
            index.fingerprint.check_matches(fingerprint, index_path=key[0])
        return index


def clear_index_cache() -> None:
    """Forget every cached index (the objects stay alive while someone holds them)."""
    with _LOCK:
        _CACHE.clear()


def cached_locations() -> list[CacheKey]:
    """The keys held, for diagnostics and tests."""
    with _LOCK:
        return list(_CACHE)
