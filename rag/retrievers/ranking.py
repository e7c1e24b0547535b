"""The last step of a fused ranking: sort by score, break exact ties by document id, cut at top-k."""

from __future__ import annotations

from haystack import Document, component

from indexers.base import rank_key
from rag.core.validation import check_top_k
from rag.retrievers.base import RetrieverOutput


def ranked(documents: list[Document], top_k: int | None = None) -> list[Document]:
    """Documents in the order of every ranking (:func:`indexers.base.rank_key`: score descending, ties by
    id), so runs are deterministic.

    >>> [d.id for d in ranked([Document(id="b", score=1.0), Document(id="a", score=1.0)])]
    ['a', 'b']
    """
    order = sorted(documents, key=lambda d: rank_key(d.id, d.score if d.score is not None else float("-inf")))
    return order if top_k is None else order[:top_k]


@component
class RankCutoff:
    """Sorts documents by score (ties by id) and keeps the first ``top_k``.

    Haystack's ``DocumentJoiner`` sorts fused documents by score but leaves equal scores in arrival
    order, and reciprocal-rank fusion ties often (rank r in one list only scores the same in either).
    """

    def __init__(self, top_k: int = 10) -> None:
        self.top_k = check_top_k(top_k)

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document], top_k: int | None = None) -> RetrieverOutput:
        k = self.top_k if top_k is None else check_top_k(top_k)
        return {"documents": ranked(documents, k)}
