"""Retrieval-augmented pipelines as Haystack components.

Components are imported lazily so that ``import rag`` stays fast and light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DenseEncoder": "rag.encoders.dense",
    "EncoderFingerprint": "rag.encoders.dense",
    "DocumentEncoder": "rag.encoders.components",
    "QueryEncoder": "rag.encoders.components",
    "DenseRetriever": "rag.retrievers.dense",
    "BM25Retriever": "rag.retrievers.bm25",
    "RankCutoff": "rag.retrievers.ranking",
    "run_query": "rag.pipelines",
    "build_pipeline": "rag.pipelines",
    "build_bundle": "rag.pipelines",
    "retrieve": "rag.pipelines",
    "load_pipeline": "rag.pipelines",
    "save_pipeline": "rag.pipelines",
    "RagConfig": "rag.core.config",
    "load_config": "rag.core.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
