"""What every retriever shares: lazy, shared index loading and turning (id, score) hits into Documents."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Generic, TypedDict, TypeVar

from haystack import Document

from rag.core.errors import ConfigError
from rag.core.validation import check_top_k
from rag.encoders.dense import EncoderFingerprint

if TYPE_CHECKING:
    from indexers.base import Index

IndexT = TypeVar("IndexT", bound="Index")


class RetrieverOutput(TypedDict):
    documents: list[Document]


class IndexBackedRetriever(Generic[IndexT]):
    """Holds an index path (JSON-able) and loads the index in an idempotent ``warm_up()``.

    Generic over the index class it searches, which a subclass names in :meth:`_index_class`, so that
    ``self.index`` has that type. The index comes from the process-wide cache
    (:func:`indexers.cache.cached_index`): two retrievers over one index share one loaded copy, and an
    index replaced on disk is loaded afresh by the next retriever that warms up.
    """

    def __init__(self, index_path: str, top_k: int = 10) -> None:
        self.index_path = str(index_path)
        self.top_k = check_top_k(top_k)
        self._index: IndexT | None = None

    def _index_class(self) -> type[IndexT]:
        """The index class this retriever searches (imported here, not at module import)."""
        raise NotImplementedError

    def _fingerprint(self) -> EncoderFingerprint | None:
        return None

    def warm_up(self) -> None:
        self._load()

    @property
    def index(self) -> IndexT:
        return self._load()

    def _load(self) -> IndexT:
        if self._index is None:
            # Here, not at import: the index modules import FAISS or bm25s, which a BM25-only (or
            # dense-only) pipeline should not pay for when it is merely constructed.
            from indexers.cache import cached_index

            loaded = cached_index(self.index_path, fingerprint=self._fingerprint())
            expected = self._index_class()
            if not isinstance(loaded, expected):
                raise ConfigError(
                    f"{type(self).__name__} cannot search {self.index_path}: it holds a "
                    f"{loaded.index_type!r} index, and it needs a {expected.__name__}. Point it at the "
                    f"matching side of the bundle."
                )
            self._index = loaded
        return self._index

    def _top_k(self, top_k: int | None) -> int:
        return self.top_k if top_k is None else check_top_k(top_k)

    def _documents(self, hits: list[tuple[str, float]]) -> list[Document]:
        stored = self.index.get([doc_id for doc_id, _ in hits])
        return [
            dataclasses.replace(doc, score=float(score)) for doc, (_, score) in zip(stored, hits, strict=True)
        ]
