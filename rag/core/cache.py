"""One cache: one key scheme and one folder layout for everything kept between runs.

Under a cache folder (``--cache-dir``, default ``runs/cache``) each kind of entry has its own
sub-folder, and every entry is named by :func:`cache_key`::

    <cache-dir>/embeddings/<key>.npy        document or query vectors of one list of texts
    <cache-dir>/bundles/<label>-<key>/      index bundles built by ``rag eval`` / ``rag eval-chunks``

A key is a hash of the kind, the kind's format version and the named parts that decide the entry's
content (sorted by name, JSON-encoded), so two kinds never share a key and bumping a kind's version
retires its old entries without touching the others. Entries are written atomically (a temporary file
renamed into place, or a bundle swapped in whole by :mod:`indexers.bundle`): a reader finds a whole
entry or none, and a damaged file is recomputed by its reader, never trusted.

>>> cache_key("embeddings", 1, texts="abc") == cache_key("embeddings", 1, texts="abc")
True
>>> cache_key("embeddings", 1, texts="abc") == cache_key("embeddings", 2, texts="abc")
False
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

# Sub-folder of each kind, and the version of its entries' format (bump it when what a key names changes).
KINDS: dict[str, int] = {"embeddings": 2, "bundles": 2}


def cache_key(kind: str, version: int, **parts: Any) -> str:
    """Key of the entry of ``kind`` (format ``version``) that ``parts`` decide; 24 hex digits.

    Values are JSON-encoded with sorted keys (``default=str`` for paths and the like), so the key does
    not depend on the order the parts are given in.
    """
    payload = json.dumps({"kind": kind, "version": version, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def texts_digest(texts: Any) -> str:
    """One hash of a list of texts, each length-delimited by its own hash (so ``["ab", "c"]`` differs
    from ``["a", "bc"]``): the part of a key that names a list of texts without storing them."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()


def kind_folder(cache_dir: str | Path, kind: str) -> Path:
    """The sub-folder of ``kind`` under ``cache_dir`` (not created)."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; known: {', '.join(KINDS)}")
    return Path(cache_dir) / kind


def entry_key(kind: str, **parts: Any) -> str:
    """:func:`cache_key` at the current version of ``kind``."""
    return cache_key(kind, KINDS[kind], **parts)


def npy_bytes(array: Any) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (no pickles)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
