"""The random baseline: drop words chosen uniformly at random until the target is met.

The same units, target, provenance and accounting as semantic compression (:mod:`compressors.base`),
with no model: what any compressor has to beat at the same token cut. The choice is reproducible: it
depends only on ``seed`` and the query text, not on earlier calls.
"""

from __future__ import annotations

import zlib

import numpy as np
from haystack import Document, component

from compressors.base import (
    DEFAULT_TOKENIZER,
    CompressorOutput,
    DocUnits,
    check_budget,
    check_documents,
    check_ratio,
    check_tokenizer,
)
from compressors.words import WordDrop, compress_words
from rag.core.validation import non_negative_int


@component
class RandomCompressor:
    """Drops random words of the retrieved documents until ``ratio`` / ``budget`` is met.

    :param seed: with the query, fixes which words go.
    """

    def __init__(
        self,
        ratio: float | None = None,
        budget: int | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        seed: int = 0,
    ) -> None:
        self.ratio = check_ratio(ratio)
        self.budget = check_budget(budget)
        self.tokenizer = check_tokenizer(tokenizer)
        self.seed = non_negative_int(seed, "seed")

    @component.output_types(documents=list[Document], metrics=dict)
    def run(
        self,
        documents: list[Document],
        query: str,
        ratio: float | None = None,
        budget: int | None = None,
        top_k: int | None = None,
    ) -> CompressorOutput:
        ratio, budget = check_ratio(ratio), check_budget(budget)
        if ratio is None and budget is None:
            ratio, budget = self.ratio, self.budget
        documents, query = check_documents(documents, query, top_k)
        return compress_words("random", documents, query, ratio, budget, self.tokenizer, self._drop)

    def _drop(self, docs: list[DocUnits], query: str, target: int, helper: WordDrop) -> None:
        pairs = [(i, u) for i, d in enumerate(docs) for u in range(len(d.units))]
        rng = np.random.default_rng([self.seed, zlib.crc32(query.encode("utf-8"))])
        helper.to_target([pairs[k] for k in rng.permutation(len(pairs))], target)
