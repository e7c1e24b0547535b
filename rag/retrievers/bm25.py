"""Sparse retrieval with BM25 (bm25s) over an index built by :mod:`indexers`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from haystack import Document, component

from rag.core.validation import check_query
from rag.retrievers.base import IndexBackedRetriever, RetrieverOutput

if TYPE_CHECKING:
    from indexers.bm25 import BM25Index


# The index class is named as a string: importing it here would load bm25s with this module.
@component
class BM25Retriever(IndexBackedRetriever["BM25Index"]):
    """Top-k documents by BM25 score for a query string; exact score ties ordered by id."""

    def _index_class(self) -> type[BM25Index]:
        from indexers.bm25 import BM25Index

        return BM25Index

    @component.output_types(documents=list[Document])
    def run(self, query: str, top_k: int | None = None) -> RetrieverOutput:
        k = self._top_k(top_k)
        hits = self.index.search([check_query(query)], k)[0]
        return {"documents": self._documents(hits)}
