"""Dense retrieval over a FAISS index built by :mod:`indexers`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from haystack import Document, component

from rag.core.errors import ConfigError
from rag.encoders.dense import DenseEncoder, EncoderFingerprint
from rag.retrievers.base import IndexBackedRetriever, RetrieverOutput

if TYPE_CHECKING:
    from indexers.dense import DenseIndex


# The index class is named as a string: importing it here would load FAISS with this module.
@component
class DenseRetriever(IndexBackedRetriever["DenseIndex"]):
    """Top-k documents by inner product with a query embedding; exact score ties ordered by id.

    :param index_path: folder written by ``rag index`` / :class:`indexers.DenseIndex`.
    :param encoder: the query encoder's settings (``DenseEncoder`` arguments). When given, loading the
        index checks that it was built with the same encoder and names any field that differs.
    """

    def __init__(self, index_path: str, top_k: int = 10, encoder: dict[str, Any] | None = None) -> None:
        # Haystack's @component rebuilds the class, so zero-argument super() would point at the old one.
        IndexBackedRetriever.__init__(self, index_path, top_k)
        self.encoder = encoder

    def _index_class(self) -> type[DenseIndex]:
        from indexers.dense import DenseIndex

        return DenseIndex

    def _fingerprint(self) -> EncoderFingerprint | None:
        return DenseEncoder(**self.encoder).fingerprint if self.encoder else None

    @component.output_types(documents=list[Document])
    def run(self, query_embedding: list[float], top_k: int | None = None) -> RetrieverOutput:
        k = self._top_k(top_k)
        vector = np.asarray(query_embedding, dtype=np.float32).reshape(1, -1)
        dimension = self.index.fingerprint.dimension
        if vector.shape[1] != dimension:
            raise ConfigError(
                f"query embedding has {vector.shape[1]} dimensions but the index at {self.index_path} "
                f"holds {dimension}-d vectors; embed queries with the encoder the index was built with"
            )
        hits = self.index.search(vector, k)[0]
        return {"documents": self._documents(hits)}
