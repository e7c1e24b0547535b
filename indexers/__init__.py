"""Build, persist, load and update indexes: FAISS dense (flat, HNSW, IVF-PQ) and BM25.

Every index type implements the :class:`Index` protocol and is registered by the ``index_type`` its
manifest records (:func:`register_index`); :func:`load_index` dispatches on it, and :func:`cached_index`
shares one loaded copy per index and manifest across the process (see :mod:`indexers.base`,
:mod:`indexers.cache`). An index is a folder with ``manifest.json`` (see :mod:`indexers.manifest`);
nothing is pickled. Submodules load lazily so that ``import indexers`` does not import FAISS or bm25s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexers.base import (
        Index,
        UnsupportedOperationError,
        index_class,
        index_types,
        load_index,
        ranked,
        register_index,
    )
    from indexers.bm25 import BM25Index
    from indexers.build import BuildSummary, build_index, directory_size
    from indexers.cache import cache_key, cached_index, clear_index_cache
    from indexers.dense import DenseIndex
    from indexers.docstore import DocStore, UnknownDocumentError
    from indexers.manifest import FORMAT_VERSION, read_manifest, verify_checksums, write_index_atomically

_LAZY = {
    "Index": "indexers.base",
    "UnsupportedOperationError": "indexers.base",
    "index_class": "indexers.base",
    "index_types": "indexers.base",
    "load_index": "indexers.base",
    "ranked": "indexers.base",
    "register_index": "indexers.base",
    "BM25Index": "indexers.bm25",
    "BuildSummary": "indexers.build",
    "build_index": "indexers.build",
    "directory_size": "indexers.build",
    "cache_key": "indexers.cache",
    "cached_index": "indexers.cache",
    "clear_index_cache": "indexers.cache",
    "DenseIndex": "indexers.dense",
    "DocStore": "indexers.docstore",
    "UnknownDocumentError": "indexers.docstore",
    "FORMAT_VERSION": "indexers.manifest",
    "read_manifest": "indexers.manifest",
    "verify_checksums": "indexers.manifest",
    "write_index_atomically": "indexers.manifest",
}

__all__ = [
    "BM25Index",
    "BuildSummary",
    "DenseIndex",
    "DocStore",
    "FORMAT_VERSION",
    "Index",
    "UnknownDocumentError",
    "UnsupportedOperationError",
    "build_index",
    "cache_key",
    "cached_index",
    "clear_index_cache",
    "directory_size",
    "index_class",
    "index_types",
    "load_index",
    "ranked",
    "register_index",
    "read_manifest",
    "verify_checksums",
    "write_index_atomically",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'indexers' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
