"""Hybrid retrieval: dense and BM25 candidates fused by reciprocal-rank fusion."""

from __future__ import annotations

from typing import Any

from haystack import Document, component
from haystack.components.joiners import DocumentJoiner

from rag.core.validation import check_query, check_top_k
from rag.retrievers.base import RetrieverOutput
from rag.retrievers.bm25 import BM25Retriever
from rag.retrievers.dense import DenseRetriever


@component
class HybridRetriever:
    """Reciprocal-rank fusion of a dense and a BM25 ranking (Haystack's ``DocumentJoiner``, k = 61).

    Each side contributes ``candidates`` documents; fused scores are RRF scores, not similarities.
    """

    def __init__(
        self,
        dense_index_path: str,
        bm25_index_path: str,
        top_k: int = 10,
        candidates: int = 100,
        encoder: dict[str, Any] | None = None,
    ) -> None:
        self.dense_index_path = str(dense_index_path)
        self.bm25_index_path = str(bm25_index_path)
        self.top_k = check_top_k(top_k)
        self.candidates = check_top_k(candidates)
        self.encoder = encoder
        self._dense = DenseRetriever(self.dense_index_path, top_k=self.candidates, encoder=encoder)
        self._bm25 = BM25Retriever(self.bm25_index_path, top_k=self.candidates)
        self._joiner = DocumentJoiner(join_mode="reciprocal_rank_fusion")

    def warm_up(self) -> None:
        self._dense.warm_up()
        self._bm25.warm_up()

    @component.output_types(documents=list[Document])
    def run(self, query: str, query_embedding: list[float], top_k: int | None = None) -> RetrieverOutput:
        k = self.top_k if top_k is None else check_top_k(top_k)
        check_query(query)
        depth = max(k, self.candidates)
        dense = self._dense.run(query_embedding=query_embedding, top_k=depth)["documents"]
        sparse = self._bm25.run(query=query, top_k=depth)["documents"]
        fused = self._joiner.run(documents=[dense, sparse])["documents"]
        return {"documents": sorted(fused, key=lambda d: d.score or 0.0, reverse=True)[:k]}
