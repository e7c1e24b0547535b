"""Build, persist, load and update indexes: FAISS dense (flat, HNSW, IVF-PQ) and BM25.

An index is a folder with ``manifest.json`` (see :mod:`indexers.manifest`); nothing is pickled.
Submodules load lazily so that ``import indexers`` does not import FAISS or bm25s.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from indexers.bm25 import BM25Index
    from indexers.build import BuildSummary, build_index, directory_size, load_index
    from indexers.dense import DenseIndex
    from indexers.docstore import DocStore, UnknownDocumentError
    from indexers.manifest import FORMAT_VERSION, read_manifest, verify_checksums, write_index_atomically

_LAZY = {
    "BM25Index": "indexers.bm25",
    "BuildSummary": "indexers.build",
    "build_index": "indexers.build",
    "directory_size": "indexers.build",
    "load_index": "indexers.build",
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
    "UnknownDocumentError",
    "build_index",
    "directory_size",
    "load_index",
    "read_manifest",
    "verify_checksums",
    "write_index_atomically",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'indexers' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
