"""Sparse retrieval with BM25 (bm25s) over an index built by :mod:`indexers`."""

from __future__ import annotations

from haystack import Document, component

from rag.core.validation import check_query
from rag.retrievers.base import IndexBackedRetriever, RetrieverOutput


@component
class BM25Retriever(IndexBackedRetriever):
    """Top-k documents by BM25 score for a query string."""

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> RetrieverOutput:
        k = self._top_k(top_k)
        hits = self.index.search([check_query(query)], k)[0]  # type: ignore[arg-type]
        return {"documents": self._documents(hits)}
