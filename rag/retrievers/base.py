"""What every retriever shares: lazy index loading and turning (id, score) hits into Documents."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from haystack import Document

from rag.core.validation import check_top_k
from rag.encoders.dense import EncoderFingerprint

if TYPE_CHECKING:
    from indexers import BM25Index, DenseIndex


class RetrieverOutput(TypedDict):
    documents: list[Document]


class IndexBackedRetriever:
    """Holds an index path (JSON-able) and loads the index in an idempotent ``warm_up()``."""

    def __init__(self, index_path: str, top_k: int = 10) -> None:
        self.index_path = str(index_path)
        self.top_k = check_top_k(top_k)
        self._index: Any = None

    def _fingerprint(self) -> EncoderFingerprint | None:
        return None

    def warm_up(self) -> None:
        if self._index is None:
            # Here, not at import: indexers.build imports FAISS and bm25s, which a BM25-only (or dense-only)
            # pipeline should not pay for when it is merely constructed.
            from indexers import load_index

            self._index = load_index(Path(self.index_path), fingerprint=self._fingerprint())

    @property
    def index(self) -> DenseIndex | BM25Index:
        self.warm_up()
        return self._index

    def _top_k(self, top_k: int | None) -> int:
        return self.top_k if top_k is None else check_top_k(top_k)

    def _documents(self, hits: list[tuple[str, float]]) -> list[Document]:
        stored = self.index.get([doc_id for doc_id, _ in hits])
        return [
            dataclasses.replace(doc, score=float(score)) for doc, (_, score) in zip(stored, hits, strict=True)
        ]
