"""Sentence embeddings kept between compressor calls, by text.

The same retrieved chunks come back for many queries (and, in a benchmark, at several ratios), and
their sentences (extractive) or word deletions (semantic) embed to the same vectors every time. A bounded
least-recently-used map from text to unit vector saves those encoder calls. sentence-transformers has no
such cache and an ``lru_cache`` cannot batch the misses into one encode call, hence this small class.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from rag.core.validation import non_negative_int


class VectorCache:
    """Unit vectors of texts: the ones not held yet in one ``encode_documents`` call, then kept.

    :param size: vectors kept (the least recently used go first); 0 keeps none.
    """

    def __init__(self, size: int = 50_000) -> None:
        self.size = non_negative_int(size, "cache_size")
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    def unit_vectors(self, encoder: Any, texts: list[str]) -> np.ndarray:
        """``len(texts)`` unit vectors, in order, from ``encoder.encode_documents`` or the cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        found: dict[str, np.ndarray] = {}
        if missing:
            fresh = encoder.encode_documents(missing)
            fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
            found = dict(zip(missing, fresh, strict=True))
        vectors = np.stack([found[t] if t in found else self._vectors[t] for t in texts])
        if self.size:
            for text in texts:
                self._vectors[text] = found[text] if text in found else self._vectors[text]
                self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vectors
