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
    Compressor,
    DocUnits,
)
from compressors.words import WordDrop, compress_words
from rag.core.validation import non_negative_int


@component
class RandomCompressor(Compressor):
    """Drops random words of the retrieved documents until ``ratio`` / ``budget`` is met.

    :param seed: with the query, fixes which words go.
    """

    method = "random"

    def __init__(
        self,
        ratio: float | None = None,
        budget: int | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        seed: int = 0,
    ) -> None:
        self.set_target(ratio, budget, tokenizer)
        self.seed = non_negative_int(seed, "seed")

    def compress(self, documents: list[Document], query: str, target: int) -> list[Document]:
        return compress_words(documents, query, target, self.tokenizer, self._drop)

    def _drop(self, docs: list[DocUnits], query: str, target: int, helper: WordDrop) -> None:
        pairs = [(i, u) for i, d in enumerate(docs) for u in range(len(d.units))]
        rng = np.random.default_rng([self.seed, zlib.crc32(query.encode("utf-8"))])
        helper.to_target([pairs[k] for k in rng.permutation(len(pairs))], target)
