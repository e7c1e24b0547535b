"""The loop shared by the compressors that drop words (semantic, random): units, order, drop, account."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from haystack import Document

from compressors.base import (
    DocUnits,
    compressed_document,
    drop_to_target,
    pieces,
    sentence_words,
    unit_costs,
)
from rag.core.tokenizers import get_token_counter


def compress_words(
    documents: list[Document],
    query: str,
    target: int,
    tokenizer: str,
    drop: Callable[[list[DocUnits], str, int, WordDrop], None],
) -> list[Document]:
    """``documents`` with word units dropped to ``target`` tokens; ``drop`` decides which (it calls
    :meth:`WordDrop.to_target` with the order it wants, once or in rounds)."""
    counter = get_token_counter(tokenizer)
    docs = []
    for doc in documents:
        units = sentence_words(doc.content or "")
        docs.append(DocUnits(doc, units, [True] * len(units)))
    costs = {
        (i, u): cost
        for i, d in enumerate(docs)
        for u, cost in enumerate(unit_costs(counter, d.doc.content or "", d.units))
    }
    drop(docs, query, target, WordDrop(docs, counter.count, costs))
    return [compressed_document(d.doc, pieces(d.units, d.kept)) for d in docs]


class WordDrop:
    """Drops units of the documents towards a target; keeps the token costs and the exact count."""

    def __init__(
        self,
        docs: list[DocUnits],
        count: Callable[[str], int],
        costs: dict[tuple[int, int], int],
    ) -> None:
        self.docs = docs
        self.count = count
        self.costs = costs

    def tokens(self) -> int:
        return sum(self.count(d.text()) for d in self.docs)

    def to_target(self, order: Sequence[tuple[int, int]], target: int) -> int:
        """Drop units in ``order`` until at most ``target`` tokens remain (as few as that takes)."""
        return drop_to_target(self.docs, order, target, self.count, self.costs)

    def drop_some(self, order: Sequence[tuple[int, int]], tokens: int) -> None:
        """Drop the first units of ``order`` whose estimated costs add up to ``tokens`` (one round)."""
        saved = 0
        for i, u in order:
            if saved >= tokens:
                break
            self.docs[i].kept[u] = False
            saved += self.costs.get((i, u), 1)
