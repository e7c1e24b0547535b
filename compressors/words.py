"""The loop shared by the compressors that drop words (semantic, random): units, order, drop, account."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from haystack import Document

from compressors.base import (
    CompressorOutput,
    DocUnits,
    account,
    check_documents,
    compressed_document,
    drop_to_target,
    pieces,
    sentence_words,
    target_tokens,
    unit_costs,
)
from rag.core.tokenizers import get_token_counter


def compress_words(
    name: str,
    documents: list[Document],
    query: str,
    ratio: float | None,
    budget: int | None,
    tokenizer: str,
    drop: Callable[[list[DocUnits], str, int, WordDrop], None],
) -> CompressorOutput:
    """Compress ``documents`` by dropping word units; ``drop`` decides which (it calls
    :meth:`WordDrop.to_target` with the order it wants, once or in rounds)."""
    started = time.perf_counter()
    documents, query = check_documents(documents, query)
    counter = get_token_counter(tokenizer)
    before = sum(counter.count(d.content or "") for d in documents)
    target = target_tokens(before, counter.count(query), ratio, budget)
    docs = []
    for doc in documents:
        units = sentence_words(doc.content or "")
        docs.append(DocUnits(doc, units, [True] * len(units)))
    helper = WordDrop(
        docs,
        counter.count,
        {
            (i, u): cost
            for i, d in enumerate(docs)
            for u, cost in enumerate(unit_costs(counter, d.doc.content or "", d.units))
        },
    )
    drop(docs, query, target, helper)
    outputs = [compressed_document(d.doc, pieces(d.units, d.kept)) for d in docs]
    return account(name, tokenizer, documents, outputs, target, started)


class WordDrop:
    """Drops units of the documents towards a target; keeps the token costs and the exact count."""

    def __init__(
        self, docs: list[DocUnits], count: Callable[[str], int], costs: dict[tuple[int, int], int]
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
