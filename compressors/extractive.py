"""Extractive compression: keep the sentences most similar to the query until the target is met.

Sentences (:func:`compressors.base.split_sentences`) of all the query's documents are ranked by the
cosine similarity of their embedding to the query's (the pipeline's encoder, queries with its query
prefix, sentences with its document prefix). They are taken in that order while they fit the target;
one that does not fit is skipped and smaller ones later in the ranking may still fit. Kept sentences stay
in their original order, with their provenance (:mod:`compressors.base`). Sentence embeddings are kept
between calls (:mod:`compressors.vectors`), since the same chunks are retrieved for many queries.
"""

from __future__ import annotations

import numpy as np
from haystack import Document, component

from compressors.base import (
    DEFAULT_TOKENIZER,
    Compressor,
    Unit,
    compressed_document,
    pieces,
    split_sentences,
)
from compressors.vectors import VectorCache
from rag.core.models import DEFAULT_DENSE_MODEL
from rag.core.tokenizers import get_token_counter
from rag.core.validation import positive_int
from rag.encoders.dense import DenseEncoder


@component
class ExtractiveCompressor(Compressor):
    """Keeps the sentences of the retrieved documents that are most similar to the query.

    :param model: sentence-transformers model (folder, package or hub id), the pipeline's encoder.
    :param query_prefix: / :param document_prefix: the encoder's prefixes (E5-style models need them).
    :param cache_size: sentence embeddings kept between calls (by text; 0: none): retrieved chunks recur
        across queries, and their sentences embed the same every time.
    """

    method = "extractive"

    def __init__(
        self,
        model: str = DEFAULT_DENSE_MODEL,
        ratio: float | None = None,
        budget: int | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
        query_prefix: str = "",
        document_prefix: str = "",
        batch_size: int = 64,
        device: str = "cpu",
        cache_size: int = 50_000,
    ) -> None:
        self.model = model
        self.set_target(ratio, budget, tokenizer)
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.batch_size = positive_int(batch_size, "batch_size")
        self.device = device
        self._vectors = VectorCache(cache_size)
        self.cache_size = self._vectors.size
        self._encoder = DenseEncoder(
            model=model,
            batch_size=batch_size,
            device=device,
            query_prefix=query_prefix,
            document_prefix=document_prefix,
        )

    def warm_up(self) -> None:
        _ = self._encoder.model

    def compress(self, documents: list[Document], query: str, target: int) -> list[Document]:
        count = get_token_counter(self.tokenizer).count
        sentences = [
            [Unit(s, e, "sentence", k) for k, (s, e) in enumerate(split_sentences(d.content or ""))]
            for d in documents
        ]
        flat = [(i, k) for i, units in enumerate(sentences) for k in range(len(units))]
        texts = [(documents[i].content or "")[sentences[i][k].start : sentences[i][k].end] for i, k in flat]
        kept = [[False] * len(units) for units in sentences]
        if flat:
            vectors = self._vectors.unit_vectors(self._encoder, texts)
            query_vector = self._encoder.encode_queries([query])[0]
            query_vector /= max(float(np.linalg.norm(query_vector)), 1e-12)
            similarity = vectors @ query_vector
            used = 0
            for position in sorted(range(len(flat)), key=lambda p: (-float(similarity[p]), p)):
                i, k = flat[position]
                # A sentence costs its own tokens plus, at most, the space that joins it to a neighbour.
                cost = count(texts[position])
                if used + cost > target:
                    continue
                kept[i][k] = True
                trial = sum(count(_text(d, s, m)) for d, s, m in zip(documents, sentences, kept, strict=True))
                if trial > target:
                    kept[i][k] = False
                    continue
                used = trial
        return [
            compressed_document(d, pieces(s, m)) for d, s, m in zip(documents, sentences, kept, strict=True)
        ]


def _text(doc: Document, units: list[Unit], kept: list[bool]) -> str:
    content = doc.content or ""
    return " ".join(content[s:e] for s, e in pieces(units, kept))
