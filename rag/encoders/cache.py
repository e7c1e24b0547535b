"""On-disk cache of document and query embeddings, so the same texts are never encoded twice.

Encoding dominates every build on a CPU (SciFact's 5,183 abstracts take minutes), and evaluations build
several indexes over the same chunks (dense, hybrid, HNSW vs flat). One ``.npy`` file holds the vectors
of one list of texts, in the ``embeddings`` folder of the cache (:mod:`rag.core.cache`), named by a key
of the encoder's fingerprint (an opaque identity of the weights and settings), the document or query
prefix and the texts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.core.cache import entry_key, npy_bytes, texts_digest
from rag.core.files import write_file_atomically
from rag.encoders.dense import DenseEncoder


def embeddings_key(encoder: DenseEncoder, texts: Sequence[str], prefix: str | None = None) -> str:
    """Key of the vectors of ``texts``; ``prefix`` is what the encoder puts before each text (default: its
    document prefix; pass ``encoder.query_prefix`` for queries). Queries and documents differ only by it."""
    return entry_key(
        "embeddings",
        encoder=encoder.fingerprint.to_dict(),
        prefix=encoder.document_prefix if prefix is None else prefix,
        texts=texts_digest(texts),
    )


def cached_embeddings(
    cache_dir: str | Path | None,
    encoder: DenseEncoder,
    texts: Sequence[str],
    compute: Callable[[], np.ndarray],
    prefix: str | None = None,
) -> np.ndarray:
    """Vectors of ``texts`` from the embeddings folder ``cache_dir`` if stored there, else ``compute()``
    and store them.

    ``cache_dir=None`` disables the cache. A file that does not load or has the wrong shape is recomputed.
    """
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{embeddings_key(encoder, texts, prefix)}.npy"
    if path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (len(texts), encoder.fingerprint.dimension):
                return vectors
        except (OSError, ValueError):
            pass
    vectors = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, npy_bytes(vectors))
    return vectors
